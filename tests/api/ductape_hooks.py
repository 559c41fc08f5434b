"""Schemathesis hooks for the Ductape Secrets API (loaded with SCHEMATHESIS_HOOKS).

JSON Schema cannot say two things the server checks, so these hooks supply them:

- ``ciphertext`` and ``wrapped_key`` must be envelopes sealed under this workspace's key:
  the ``ductape-envelope`` / ``ductape-wrapped-key`` formats generate well-formed ones
  carrying the workspace key id (``DUCTAPE_KEY_ID``). The server only checks their form
  and key id; it never opens them (it cannot).
- setup's first key must wrap the workspace key named by ``key_id``;
- a new secret's ``expires_at`` must be in the future: a schema-valid expiry in the past is
  moved into the future. Values the schema forbids (not an integer, below 1) are left alone,
  so negative tests still see their rejection.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import schemathesis
from hypothesis import strategies as st

KEY_ID = os.environ["DUCTAPE_KEY_ID"]


def _sealed(prefix: str) -> st.SearchStrategy[str]:
    # 24-byte nonce + ciphertext + 16-byte tag, base64url without padding.
    return st.binary(min_size=40, max_size=120).map(
        lambda raw: f"{prefix}.xc20p.{KEY_ID}." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    )


schemathesis.openapi.format("ductape-envelope", _sealed("dv1"))
schemathesis.openapi.format("ductape-wrapped-key", _sealed("dwk1"))


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    body = case.body
    if case.method.upper() != "POST" or not isinstance(body, dict):
        return
    if case.path == "/v1/setup":
        # The first key's wrapped workspace key must name the workspace key being set up.
        key_id, first = body.get("key_id"), body.get("access_key")
        if isinstance(key_id, str) and isinstance(first, dict):
            wrapped = first.get("wrapped_key")
            if isinstance(wrapped, str) and wrapped.startswith(f"dwk1.xc20p.{KEY_ID}."):
                first["wrapped_key"] = wrapped.replace(KEY_ID, key_id, 1)
        return
    if case.path != "/v1/secrets":
        return
    t = body.get("expires_at")
    now = int(time.time())
    if isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= now + 60:
        body["expires_at"] = now + 3600 + t % 100_000_000
