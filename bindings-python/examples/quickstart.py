"""The documented flow in Python. Run a dev server and export the two lines it prints:

    ductape server --dev
    python examples/quickstart.py
"""

from __future__ import annotations

import time

from ductape import ConflictError, Ductape, PermissionDeniedError


def main() -> None:
    ductape = Ductape()  # DUCTAPE_ACCESS_KEY, DUCTAPE_URL
    ductape.init()

    secret = ductape.secrets.create(
        key="STRIPE_API_KEY",
        value="sk_live_51ABC123...",
        description="Production Stripe API key for payment processing",
        token_type="api",
        scope=["stripe_payments", "checkout_service"],
        envs=["prd", "staging"],
        expires_at=int(time.time()) + 365 * 24 * 60 * 60,
    )
    print("Secret created:", secret.key)

    for s in ductape.secrets.fetch_all():
        print(f"{s.key}: {s.description or 'No description'}")
        print(f"  Scope: {', '.join(s.scope) or 'All apps'}")
        print(f"  Environments: {', '.join(s.envs) or 'All environments'}")

    fetched = ductape.secrets.fetch("STRIPE_API_KEY")
    print("Key:", fetched.key, "value length:", len(fetched.value))

    updated = ductape.secrets.update(
        "STRIPE_API_KEY",
        value="sk_live_51NEW_KEY...",
        description="Rotated Stripe API key - January 2025",
        expires_at=int(time.time()) + 180 * 24 * 60 * 60,
    )
    print("Secret updated:", updated.key, "version", updated.version)

    try:
        ductape.secrets.create(key="STRIPE_API_KEY", value="secret_value")
    except ConflictError:
        print("Secret with this key already exists")
    except PermissionDeniedError:
        print("You do not have permission to create secrets")

    if ductape.secrets.revoke("STRIPE_API_KEY"):
        print("Secret has been revoked")
    if ductape.secrets.delete("STRIPE_API_KEY"):
        print("Secret successfully deleted")


if __name__ == "__main__":
    main()
