"""Every documented error as its exception class, with .status, .code and .message."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import ductape
import pytest
from conftest import Server, ductape_bin
from ductape import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    Ductape,
    DuctapeConnectionError,
    DuctapeError,
    DuctapeTimeoutError,
    NotFoundError,
    NotInitializedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    SecretExpiredError,
    ValidationError,
)


@pytest.fixture
def client(server: Server) -> Ductape:
    d = Ductape(access_key=server.access_key, url=server.url)
    d.init()
    return d


def test_a_duplicate_key_is_a_conflict_error(client: Ductape, unique_key: str) -> None:
    client.secrets.create(key=unique_key, value="a")
    with pytest.raises(ConflictError) as e:
        client.secrets.create(key=unique_key, value="b")
    assert (e.value.status, e.value.code) == (409, "secret_exists")
    assert e.value.message == f"Secret with key '{unique_key}' already exists"
    assert isinstance(e.value, DuctapeError)


def test_missing_keys_are_not_found(client: Ductape) -> None:
    for call in (
        lambda: client.secrets.fetch("NOPE"),
        lambda: client.secrets.update("NOPE", value="x"),
        lambda: client.secrets.delete("NOPE"),
        lambda: client.secrets.revoke("NOPE"),
    ):
        with pytest.raises(NotFoundError) as e:
            call()
        assert (e.value.status, e.value.code, str(e.value)) == (404, "secret_not_found", "Secret 'NOPE' not found")


def test_an_unknown_access_key_is_an_authentication_error(server: Server) -> None:
    parts = server.access_key.split(".")
    wrong = ".".join([parts[0], "A" * 43, parts[2]])
    d = Ductape(access_key=wrong, url=server.url)
    with pytest.raises(AuthenticationError) as e:
        d.init()
    assert e.value.status == 401


def test_a_key_without_permission_gets_permission_denied(server: Server, client: Ductape, unique_key: str) -> None:
    out = subprocess.run(
        [ductape_bin(), "access-keys", "create", "--name", "reader", "--permissions", "list,read"],
        env={"DUCTAPE_URL": server.url, "DUCTAPE_ACCESS_KEY": server.access_key},
        capture_output=True, text=True, check=True,
    )
    reader = Ductape(access_key=out.stdout.strip().removeprefix("DUCTAPE_ACCESS_KEY="), url=server.url)
    reader.init()
    with pytest.raises(PermissionDeniedError) as e:
        reader.secrets.create(key=unique_key, value="secret_value")
    assert e.value.status == 403 and "'write'" in e.value.message


def test_an_expired_secret_is_gone(client: Ductape, unique_key: str) -> None:
    with pytest.raises(ValidationError):  # created already expired: refused
        client.secrets.create(key=unique_key, value="old", expires_at=int(time.time()) - 10)
    client.secrets.create(key=unique_key, value="old")
    client.secrets.update(unique_key, expires_at=int(time.time()) - 10)
    assert next(m for m in client.secrets.fetch_all() if m.key == unique_key).status == "expired"
    with pytest.raises(SecretExpiredError) as e:
        client.secrets.fetch(unique_key)
    assert (e.value.status, str(e.value)) == (410, f"Secret '{unique_key}' has expired")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": "", "value": "v"}, "'key'"),
        ({"key": "bad key", "value": "v"}, "'key'"),
        ({"key": 123, "value": "v"}, "'key'"),
        ({"key": "K", "value": 42}, "'value'"),
        ({"key": "K", "value": "v", "token_type": "bearer"}, "'token_type'"),
        ({"key": "K", "value": "v", "scope": "app"}, "'scope'"),
        ({"key": "K", "value": "v", "envs": [1, 2]}, "'envs'"),
        ({"key": "K", "value": "v", "expires_at": -1}, "'expires_at'"),
        ({"key": "K", "value": "v", "expires_at": "tomorrow"}, "'expires_at'"),
        ({"key": "K", "value": "v", "expires_at": 1.5}, "'expires_at'"),
    ],
)
def test_bad_arguments_raise_before_any_request(kwargs: Any, field: str) -> None:
    # Nothing listens at this URL and init() was never called: the check comes first.
    d = Ductape(access_key="dtpk_" + "0" * 16 + "." + "A" * 43 + "." + "A" * 43, url="http://127.0.0.1:9")
    with pytest.raises(ValidationError) as e:
        d.secrets.create(**kwargs)
    assert field in str(e.value)
    assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)
    assert e.value.status == 422


def test_update_arguments_are_checked_too(client: Ductape) -> None:
    with pytest.raises(TypeError):
        client.secrets.update("K", scope="not-a-list")
    with pytest.raises(ValueError, match="nothing to update"):
        client.secrets.update("K")


def test_a_value_over_64_kib_is_payload_too_large(client: Ductape, unique_key: str) -> None:
    client.secrets.create(key=unique_key, value="x" * 65536)
    with pytest.raises(PayloadTooLargeError) as e:
        client.secrets.create(key=unique_key + "_big", value="x" * 65537)
    assert e.value.status == 413


def test_calls_before_init_say_what_to_do() -> None:
    d = Ductape(access_key="dtpk_" + "0" * 16 + "." + "A" * 43 + "." + "A" * 43, url="http://127.0.0.1:9")
    with pytest.raises(NotInitializedError, match="init"):
        d.secrets.fetch("K")


def test_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUCTAPE_ACCESS_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="DUCTAPE_ACCESS_KEY"):
        Ductape()
    with pytest.raises(ConfigurationError, match="malformed access key"):
        Ductape(access_key="not-a-key")
    with pytest.raises(ConfigurationError):
        Ductape(access_key="dtpk_" + "0" * 16 + "." + "A" * 43 + "." + "A" * 43, url="ftp://x")
    with pytest.raises(ConfigurationError, match="timeout"):
        Ductape(access_key="dtpk_" + "0" * 16 + "." + "A" * 43 + "." + "A" * 43, timeout=-1)


def test_an_unreachable_server_is_a_connection_error() -> None:
    d = Ductape(access_key="dtpk_" + "0" * 16 + "." + "A" * 43 + "." + "A" * 43,
                url="http://127.0.0.1:9", max_retries=1)
    with pytest.raises(DuctapeConnectionError) as e:
        d.init()
    assert e.value.status is None and e.value.code == "connection_error"
    assert isinstance(e.value, ConnectionError)


def test_every_exported_error_is_a_ductape_error() -> None:
    for name in ductape.errors.__all__:
        assert issubclass(getattr(ductape, name), DuctapeError)


def test_rate_limits_are_rate_limit_errors_with_retry_after() -> None:
    limited = Server("--rate-limit", "2")
    try:
        d = Ductape(access_key=limited.access_key, url=limited.url, max_retries=0)
        d.init()
        with pytest.raises(RateLimitError) as e:
            for _ in range(20):
                d.secrets.fetch_all()
        assert e.value.status == 429 and e.value.code == "rate_limited"
        assert e.value.retry_after is not None and 1 <= e.value.retry_after <= 2
        # With retries (the default) the client waits it out instead.
        patient = Ductape(access_key=limited.access_key, url=limited.url)
        patient.init()
        for _ in range(6):
            patient.secrets.fetch_all()
    finally:
        limited.stop()


def test_a_slow_server_is_a_timeout_error(server: Server) -> None:
    from conftest import SlowProxy

    proxy = SlowProxy(server.url, 3)
    try:
        d = Ductape(access_key=server.access_key, url=proxy.url, timeout=0.3, max_retries=0)
        with pytest.raises(DuctapeTimeoutError) as e:
            d.init()
        assert e.value.code == "timeout" and isinstance(e.value, TimeoutError)
    finally:
        proxy.close()
