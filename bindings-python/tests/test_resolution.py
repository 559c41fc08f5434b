"""Using secrets at run time: resolve, check, bound keys, audit and usage."""

from __future__ import annotations

import subprocess
import time

import pytest
from conftest import Server, ductape_bin
from ductape import (
    Ductape,
    NotFoundError,
    PermissionDeniedError,
    SecretExpiredError,
    SecretRevokedError,
    ValidationError,
)


@pytest.fixture(scope="module")
def admin(server: Server) -> Ductape:
    d = Ductape(access_key=server.access_key, url=server.url)
    d.init()
    d.secrets.create(key="STRIPE_KEY", value="sk_live_stripe", scope=["stripe_app"])
    d.secrets.create(key="PROD_KEY", value="prod-only", envs=["prd"])
    d.secrets.create(key="OLD_KEY", value="old")
    d.secrets.update("OLD_KEY", expires_at=1000)  # a create with a past expiry is refused
    d.secrets.create(key="X", value="x")
    d.secrets.revoke("X")
    # Two days and an hour: still "2 days" however long the suite takes to get there.
    d.secrets.create(key="SOON", value="soon", expires_at=int(time.time()) + 2 * 86400 + 3600)
    return d


def test_resolve_substitutes_every_reference_keeping_the_shape(admin: Ductape) -> None:
    config = {"headers": {"Authorization": "Bearer $Token{STRIPE_KEY}"}, "n": 3, "l": ["$Token{SOON}", None]}
    out = admin.secrets.resolve(config, app="stripe_app", env="dev")
    assert out == {"headers": {"Authorization": "Bearer sk_live_stripe"}, "n": 3, "l": ["soon", None]}
    assert config["headers"]["Authorization"] == "Bearer $Token{STRIPE_KEY}", "the input is untouched"
    assert admin.secrets.resolve("$$Token{X} is literal") == "$Token{X} is literal"


@pytest.mark.parametrize(
    ("ref", "app", "env", "cls", "message"),
    [
        ("STRIPE_KEY", "other_app", None, PermissionDeniedError, "Secret 'STRIPE_KEY' is not accessible by app 'other_app'"),
        ("PROD_KEY", None, "dev", PermissionDeniedError, "Secret 'PROD_KEY' is not available in environment 'dev'"),
        ("OLD_KEY", None, None, SecretExpiredError, "Secret 'OLD_KEY' has expired"),
        ("X", None, None, SecretRevokedError, "Secret 'X' has been revoked"),
        ("MY_SECRET", None, None, NotFoundError, "Secret 'MY_SECRET' not found"),
    ],
)
def test_each_failure_has_its_class_and_message(
    admin: Ductape, ref: str, app: str | None, env: str | None, cls: type, message: str
) -> None:
    with pytest.raises(cls) as e:
        admin.secrets.resolve({"v": f"$Token{{{ref}}}"}, app=app, env=env)
    assert str(e.value) == message


def test_several_failures_are_listed(admin: Ductape) -> None:
    with pytest.raises(NotFoundError) as e:
        admin.secrets.resolve(["$Token{NOPE}", "$Token{X}"])
    assert [str(f) for f in e.value.failures] == ["Secret 'NOPE' not found", "Secret 'X' has been revoked"]
    assert isinstance(e.value.failures[1], SecretRevokedError)


def test_malformed_references_are_validation_errors(admin: Ductape) -> None:
    for bad in ("$Token{", {"a": "$Token{}"}, ["$Token{bad key}"]):
        with pytest.raises(ValidationError, match="malformed secret reference"):
            admin.secrets.resolve(bad)


def test_arguments_of_the_wrong_kind_are_named(admin: Ductape) -> None:
    with pytest.raises(TypeError, match="'app'"):
        admin.secrets.resolve("$Token{X}", app=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'expiring_within' must be a positive number of seconds"):
        admin.secrets.check("$Token{X}", expiring_within=-1)


def test_check_reports_without_values(admin: Ductape) -> None:
    report = admin.secrets.check({"a": "$Token{SOON}", "b": "$Token{PROD_KEY}"}, app="web", env="dev")
    assert not report.ok
    soon, prod = report.references
    assert soon.ok and soon.warning is not None and "expires in 2 days" in soon.warning
    assert not prod.ok and prod.status == 403 and prod.message == "Secret 'PROD_KEY' is not available in environment 'dev'"
    assert "soon" not in repr(report).replace("SOON", "")


def test_a_bound_key_finds_nothing_out_of_scope(server: Server, admin: Ductape) -> None:
    admin.secrets.create(key="PAY_KEY", value="pay", scope=["payment_app"], envs=["prd"])
    out = subprocess.run(
        [ductape_bin(), "access-keys", "create", "--name", "rt", "--permissions", "list,read",
         "--app", "payment_app", "--envs", "prd"],
        env={"DUCTAPE_URL": server.url, "DUCTAPE_ACCESS_KEY": server.access_key},
        capture_output=True, text=True, check=True,
    )
    rt = Ductape(access_key=out.stdout.strip().removeprefix("DUCTAPE_ACCESS_KEY="), url=server.url)
    rt.init()
    assert rt.secrets.resolve("$Token{PAY_KEY}", app="payment_app", env="prd") == "pay"
    # Outside its binding a secret does not exist for the key: the same 404 as a missing one.
    with pytest.raises(NotFoundError, match="^Secret 'STRIPE_KEY' not found$"):
        rt.secrets.fetch("STRIPE_KEY")
    assert "STRIPE_KEY" not in {m.key for m in rt.secrets.fetch_all()}


def test_audit_and_usage(admin: Ductape) -> None:
    admin.secrets.resolve("$Token{STRIPE_KEY}", app="stripe_app", env="prd")
    with pytest.raises(PermissionDeniedError):
        admin.secrets.resolve("$Token{STRIPE_KEY}", app="intruder", env="prd")
    page = admin.audit(secret_key="STRIPE_KEY", limit=1)
    assert len(page.events) == 1 and page.next_before is not None
    latest = page.events[0]
    assert (latest.app, latest.allowed, latest.action) == ("intruder", False, "resolve")
    assert latest.reason == "Secret 'STRIPE_KEY' is not accessible by app 'intruder'"
    older = admin.audit(secret_key="STRIPE_KEY", before=page.next_before)
    assert all(e.id < latest.id for e in older.events)
    usage = {(u.app, u.env): u for u in admin.secrets.usage("STRIPE_KEY")}
    assert usage[("intruder", "prd")].denied == 1
    assert usage[("stripe_app", "prd")].reads >= 1


def _batch_requests(server: Server) -> int:
    import urllib.request

    text = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    prefix = 'ductape_http_requests_total{method="POST",route="/v1/secrets/batch-get"'
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_a_hundred_references_resolve_in_one_request(server: Server, admin: Ductape) -> None:
    for i in range(100):
        admin.secrets.create(key=f"MANY_{i}", value=f"v{i}")
    config = {f"f{i}": f"x-$Token{{MANY_{i}}}" for i in range(100)}
    before = _batch_requests(server)
    out = admin.secrets.resolve(config, app="web", env="prd")
    assert _batch_requests(server) - before == 1
    assert out == {f"f{i}": f"x-v{i}" for i in range(100)}
    # One audit event records the batch's reads, found by any of its keys.
    event = admin.audit(secret_key="MANY_42", limit=1).events[0]
    assert (event.action, event.secret_key, event.allowed) == ("resolve", "", True)
    assert set(event.keys) == {f"MANY_{i}" for i in range(100)}


def test_the_copy_keeps_every_python_object_it_does_not_change(admin: Ductape) -> None:
    admin.secrets.create(key="WALK", value="walked")

    class Tag(str):
        pass

    big, nan, key = 2**80, float("nan"), "kept-key"
    config = {
        key: ("$Token{WALK}", "plain", 3, 2.5, True, None, big, nan, Tag("tagged")),
        "nested": [{"deep": ["x $Token{WALK} y", "$$Token{WALK}"]}],
        "set": {"$Token{WALK}"},
        "sub": Tag("$Token{WALK}"),
    }
    out = admin.secrets.resolve(config)
    # Tuples and sets become lists, as in JSON; a str subclass with a reference a str.
    assert out[key][:7] == ["walked", "plain", 3, 2.5, True, None, big]
    assert out["nested"] == [{"deep": ["x walked y", "$Token{WALK}"]}]
    assert out["set"] == ["walked"] and out["sub"] == "walked" and type(out["sub"]) is str
    # What has no reference is the very object it was (immutable, so safely shared); every
    # dict and list is new, so changing the copy never changes the input.
    assert next(k for k in out if k == key) is next(k for k in config if k == key)
    assert out[key][1] is config[key][1] and out[key][6] is big and out[key][7] is nan
    assert type(out[key][8]) is Tag
    out["nested"][0]["deep"].append("more")
    assert config["nested"] == [{"deep": ["x $Token{WALK} y", "$$Token{WALK}"]}]
    assert admin.secrets.resolve("no reference") == "no reference"
    assert admin.secrets.resolve(7) == 7 and admin.secrets.resolve(None) is None


def test_a_configuration_that_is_not_json_like_is_refused_by_name(admin: Ductape) -> None:
    with pytest.raises(ValidationError, match="arguments must be JSON-like values: dict keys must be strings"):
        admin.secrets.resolve({"ok": {1: "$Token{WALK}"}})
    looped: dict[str, object] = {}
    looped["self"] = looped
    with pytest.raises(ValidationError, match="nested more than 128 levels deep"):
        admin.secrets.resolve(looped)
    with pytest.raises(ValidationError, match="arguments must be JSON-like values"):
        admin.secrets.resolve({"when": object()})
    with pytest.raises(ValidationError, match="arguments must be JSON-like values: dict keys"):
        admin.secrets.check({2: "x"})


def test_a_malformed_reference_is_named_by_its_place_not_its_text(admin: Ductape) -> None:
    config = {"a": [{"b/c": "secret-ish $Token{bad key}"}]}
    with pytest.raises(ValidationError) as e:
        admin.secrets.resolve(config)
    assert str(e.value).startswith("malformed secret reference at /a/0/b~1c:"), str(e.value)
    assert "secret-ish" not in str(e.value)
    report = admin.secrets.check({"x": ["$Token{WALK}", "$Token{WALK}"]})
    assert [r.key for r in report.references] == ["WALK"] and report.ok
