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
    assert ("check date_index: WARNING: no index the day's read can use starts with 'timestamp' (hidden, "
            "partial and hashed ones cannot): each day's read scans the whole collection; create one: db.eat_agent_experiences.createIndex({\"timestamp\": 1})") in text
    assert _date_check(cfg) | {"detail": ""} == {"check": "date_index", "ok": True, "warning": True, "exit_code": 0,
                                                 "detail": ""}
    collection.create_index([("final_outcome", 1), ("timestamp", 1)])  # the date field second: no use for a day
    assert _date_check(cfg)["warning"]
    collection.create_index([("timestamp", 1), ("_id", 1)])
    check = _date_check(cfg)
    assert not check["warning"] and check["ok"] and check["detail"] == "index timestamp_1__id_1 starts with 'timestamp'"
    assert "check date_index: ok: index timestamp_1__id_1" in run(cfg, "config", "--check", code=0).stdout


def test_an_index_the_day_s_read_cannot_use_is_no_date_index(cfg, collection):
    """An index that starts with the date field but that the query planner will not use for a range
    of dates -- hidden, partial (its filter is not the day's query), or hashed -- leaves every day's
    read a scan of the whole collection: warned about as if there were none, not reported ok. (The
    test server makes no hashed index.)"""
    seed(collection, [(1, 200)])
    for keys, options in (([("timestamp", 1)], {"hidden": True}),
                          ([("timestamp", 1)], {"partialFilterExpression": {"final_outcome": "success"}})):
        name = collection.create_index(keys, **options)
        check = _date_check(cfg)
        assert check["warning"] and "no index the day's read can use starts with 'timestamp'" in check["detail"], \
            (options, check)
        collection.drop_index(name)
    collection.create_index([("timestamp", -1)])  # descending serves a range as well
    assert not _date_check(cfg)["warning"]
