"""Schemathesis hooks for the Ductape Secrets API (loaded with SCHEMATHESIS_HOOKS).

JSON Schema cannot say what the server checks of these, so the hooks supply it:

- ``ciphertext`` must be a format-2 sealed value wrapped to exactly its readers: on a dev
  server that is the unbound binding alone (``DUCTAPE_UNBOUND_BINDING``), so the
  ``ductape-envelope`` format generates well-formed ``dv2`` values wrapped to it. The server
  only checks their form and recipients; it never opens them (it cannot).
- a new key's ``wrapped_key`` is a ``dg2`` grant of the unbound binding (``ductape-wrapped-key``);
- schemathesis's fuzzing phase does not always honour a custom format: a short string that is
  not a ``dv2`` value (schema-valid, as the schema cannot say more) is replaced by one that
  is; a non-string, or one over the length limit, is left for the negative tests;
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

# Format 2: a dev server has one binding, the unbound one, so every value is wrapped to it.
UNBOUND = os.environ["DUCTAPE_UNBOUND_BINDING"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sealed_v2() -> st.SearchStrategy[str]:
    # dv2.<generation>.<nonce + ciphertext + tag>.<binding>:<enc + wrapped key + tag>
    return st.tuples(st.binary(min_size=40, max_size=120), st.binary(min_size=80, max_size=80)).map(
        lambda p: f"dv2.1.{_b64(p[0])}.{UNBOUND}:{_b64(p[1])}"
    )


schemathesis.openapi.format("ductape-envelope", _sealed_v2())
def _grants() -> st.SearchStrategy[str]:
    # dg2.<public key>.<generation>:<binding>:<wrapped binding key>: a grant of the unbound
    # binding (a key with an app or envs names another binding: 409 until it is registered).
    return st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=80, max_size=80)).map(
        lambda p: f"dg2.{_b64(p[0])}.1:{UNBOUND}:{_b64(p[1])}"
    )


schemathesis.openapi.format("ductape-wrapped-key", _grants())


def _well_formed(item: Any) -> None:
    ct = item.get("ciphertext") if isinstance(item, dict) else None
    if isinstance(ct, str) and len(ct) <= 4096 and not ct.startswith("dv2."):
        item["ciphertext"] = f"dv2.1.{_b64(os.urandom(64))}.{UNBOUND}:{_b64(os.urandom(80))}"


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    body = case.body
    if isinstance(body, dict) and case.method.upper() in ("POST", "PATCH") and case.path.startswith("/v1/secrets"):
        _well_formed(body)
        for item in body.get("secrets") or [] if isinstance(body.get("secrets"), list) else []:
            _well_formed(item)
    if case.method.upper() != "POST" or not isinstance(body, dict):
        return
    if case.path != "/v1/secrets":
        return
    t = body.get("expires_at")
    now = int(time.time())
    if isinstance(t, (int, float)) and not isinstance(t, bool) and t == int(t) and 1 <= t <= now + 60:
        body["expires_at"] = now + 3600 + int(t) % 100_000_000
