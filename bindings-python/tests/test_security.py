"""No plaintext value in repr, str of errors, logging output or tracebacks."""

from __future__ import annotations

import logging
import pickle
import traceback

import pytest
from conftest import Server
from ductape import Ductape, DuctapeError

CANARY = "sk_live_PY_CANARY_9d8c7b6a"


def test_no_value_or_access_key_in_reprs_errors_logs_or_tracebacks(
    server: Server, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    d = Ductape(access_key=server.access_key, url=server.url)
    d.init()
    created = d.secrets.create(key="PY_CANARY", value=CANARY)
    secret = d.secrets.fetch("PY_CANARY")
    assert secret.value == CANARY
    shown = [repr(d), str(d), repr(d.secrets), repr(created), repr(secret), str(secret)]
    errors = []
    for bad in (
        lambda: d.secrets.create(key="PY_CANARY", value=CANARY),  # 409
        lambda: d.secrets.create(key=CANARY + " x", value=CANARY),  # bad key
        lambda: d.secrets.create(key="K", value=CANARY, scope=CANARY),  # bad scope
        lambda: d.secrets.create(key="K", value=CANARY, token_type=CANARY),  # type: ignore[arg-type]
        lambda: d.secrets.update("PY_CANARY", expires_at=CANARY),  # type: ignore[arg-type]
        lambda: Ductape(access_key=CANARY),
        lambda: Ductape(access_key=server.access_key[:-3] + "xyz", url=server.url).init(),
    ):
        try:
            bad()
        except DuctapeError as e:
            errors.append(e)
            shown += [str(e), repr(e), "".join(traceback.format_exception(type(e), e, e.__traceback__))]
            logging.getLogger("app").exception("call failed")
    assert len(errors) == 7
    shown += [r.getMessage() for r in caplog.records] + [caplog.text]
    out = capsys.readouterr()
    shown += [out.out, out.err]
    secret_part = server.access_key.split(".")[1]
    for text in shown:
        assert "PY_CANARY_9d8c7b6a" not in text, text
        assert secret_part not in text, text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(d)
    d.secrets.delete("PY_CANARY")
    # The server's own log never saw it either.
    assert not any("PY_CANARY_9d8c7b6a" in line for line in server.logs)
