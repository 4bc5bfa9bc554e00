"""The rule's WHERE clause (a safe subset of AWS IoT SQL) and the ingest's cached view of the registry."""

import pytest

from dataplane.ingest.directory import CachedDeviceNames
from dataplane.ingest.where import WhereError, compile_where

READING = {"ozone": 41.0, "pm": None, "site": "harbour", "ok": True, "meta": {"fw": 3}, "count": 7}


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("", True),
        ("ozone > 40", True),
        ("ozone >= 41 AND ozone <= 41.0", True),
        ("ozone < 40 OR site = 'harbour'", True),
        ("NOT (ozone > 40)", False),
        ("site <> 'harbour'", False),
        ("site != 'it''s'", True),
        ("pm IS NULL", True),
        ("pm IS NOT NULL", False),
        ("missing IS NOT NULL", False),
        ("missing > 1", False),  # Undefined: the rule does not fire
        ("missing < 1", False),
        ("site > 3", False),  # a string against a number: Undefined too
        ("ok = TRUE", True),
        ("ok", True),
        ("ok = 1", False),  # a boolean is not a number
        ("meta.fw = 3", True),
        ("count = 7 and ozone > 1e1", True),
        ("ozone > -1.5", True),
    ],
)
def test_where_clauses_follow_iot_sql(clause, expected):
    predicate = compile_where(clause)
    if clause:
        assert predicate(READING) is expected
    else:
        assert predicate is None


@pytest.mark.parametrize("clause", ["ozone >", "(ozone > 1", "ozone > 1 1", "ozone = 'open", "ozone ~ 3", "IS NULL x"])
def test_bad_where_clauses_are_refused_when_compiled(clause):
    with pytest.raises(WhereError):
        compile_where(clause)


def test_cached_device_names_refresh_at_most_every_interval():
    now, loads, names = [0.0], [], {"a"}

    def load():
        loads.append(now[0])
        return set(names)

    known = CachedDeviceNames(load, refresh_s=5, clock=lambda: now[0])
    assert known("a") and not known("b")
    names.add("b")
    now[0] = 4.9
    assert not known("b") and len(loads) == 1
    now[0] = 5.0
    assert known("b") and len(loads) == 2


def test_cached_device_names_accept_all_until_the_registry_answers_and_then_keep_the_last_list():
    now, answer = [0.0], [RuntimeError("database down")]

    def load():
        if isinstance(answer[0], Exception):
            raise answer[0]
        return answer[0]

    known = CachedDeviceNames(load, refresh_s=1, clock=lambda: now[0])
    assert known("anyone")  # fail open: telemetry must not turn into errors because the registry is down
    answer[0], now[0] = {"a"}, 1.0
    assert known("a") and not known("anyone")
    answer[0], now[0] = RuntimeError("down again"), 2.0
    assert known("a") and not known("anyone")
