"""`config --check` warns, as pt-archiver does, when no index starts with the date field: archiving
still works, but each day it reads scans the whole collection (a first catch-up of N days: N scans)."""
from __future__ import annotations

import json

from tests.test_cli_daemon import run
from tests.test_daemon import seed


def _date_check(cfg) -> dict:
    out = json.loads(run(cfg, "config", "--check", "--json", code=0).stdout)
    (check,) = [c for c in out["checks"] if c["check"] == "date_index"]
    return check


def test_config_check_warns_without_an_index_on_the_date_field(cfg, collection):
    seed(collection, [(1, 200)])
    text = run(cfg, "config", "--check", code=0).stdout  # a warning, not a failure
    assert ("check date_index: WARNING: no index starts with 'timestamp': each day's read scans the whole "
            "collection; create one: db.eat_agent_experiences.createIndex({\"timestamp\": 1})") in text
    assert _date_check(cfg) | {"detail": ""} == {"check": "date_index", "ok": True, "warning": True, "exit_code": 0,
                                                 "detail": ""}
    collection.create_index([("final_outcome", 1), ("timestamp", 1)])  # the date field second: no use for a day
    assert _date_check(cfg)["warning"]
    collection.create_index([("timestamp", 1), ("_id", 1)])
    check = _date_check(cfg)
    assert not check["warning"] and check["ok"] and check["detail"] == "index timestamp_1__id_1 starts with 'timestamp'"
    assert "check date_index: ok: index timestamp_1__id_1" in run(cfg, "config", "--check", code=0).stdout
