"""What replay refuses line by line (times, field types, nesting) instead of failing the
whole run later."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dsl.facts import NO_IP
from server.phone import PhoneParser
from server.tools.replay import ReplayInputError, parse_line
from server.tools.replay_input import BadLine, BadLines, TooManyBadLines, parse_lines

PARSER = PhoneParser()


def line(at: Any) -> dict[str, Any]:
    return {"tenant": "t", "phone_number": "+8613800138000", "event": {"occurred_at": at}}


@pytest.mark.parametrize(
    "at",
    [
        json.loads("NaN"),
        json.loads("Infinity"),
        json.loads("-Infinity"),
        1e15,  # year 31 million
        -1.0,
        "0001-01-01T00:00:00Z",
        "9999-12-31T00:00:00Z",  # a calendar day after it does not exist
        "9999-12-01T00:00:00Z",
    ],
    ids=["nan", "inf", "-inf", "far future", "before 1970", "year 1", "9999-12-31", "9999-12"],
)
def test_out_of_range_times_are_refused(at: Any) -> None:
    with pytest.raises(ReplayInputError, match=r"^line 7: occurred_at out of range"):
        parse_line(line(at), 7, PARSER, "t")


@pytest.mark.parametrize("at", [True, None, "yesterday", [1]])
def test_times_that_are_not_times_are_refused(at: Any) -> None:
    with pytest.raises(ReplayInputError, match=r"occurred_at"):
        parse_line(line(at), 1, PARSER, "t")


@pytest.mark.parametrize(
    ("at", "epoch"),
    [(1_790_000_000, 1_790_000_000.0), ("2026-03-01T00:00:00+08:00", 1_772_294_400.0)],
)
def test_good_times(at: Any, epoch: float) -> None:
    assert parse_line(line(at), 1, PARSER, "t").occurred_at == epoch


DECISION_LOG = {
    "v": 1,
    "tenant": "t",
    "phone": {"hash": "h", "valid": True, "country_code": 86},
    "event": {"occurred_at": 1_790_000_000},
}
EVENT = {"tenant": "t", "phone_number": "+8613800138000", "event": {"occurred_at": 1_790_000_000}}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({**EVENT, "event": {**EVENT["event"], "attributes": ["a", "b"]}}, "event.attributes must"),
        ({**EVENT, "event": {**EVENT["event"], "attributes": {"a": {}}}}, "event.attributes must"),
        ({**EVENT, "event": {**EVENT["event"], "scene": ["register"]}}, "event.scene must"),
        ({**EVENT, "event": "register"}, "event must be an object"),
        ({**EVENT, "phone_number": 8613800138000}, "phone_number must be a string"),
        ({**EVENT, "default_region": {"cn": 1}}, "default_region must be a string"),
        ({**EVENT, "tenant": ["t"]}, "tenant must be a string"),
        ({**DECISION_LOG, "phone": "+8613800138000"}, "phone must be an object"),
        ({**DECISION_LOG, "phone": {"country_code": "86"}}, "phone.country_code must"),
        ({**DECISION_LOG, "phone": {"country_code": 10**30}}, "phone.country_code must"),
        ({**DECISION_LOG, "phone": {"hash": {"x": 1}}}, "phone.hash must be a string"),
        ({**DECISION_LOG, "lists": ["privacy"]}, "lists must be an object"),
        ({**DECISION_LOG, "lists": {"privacy": "risk2"}}, "lists must be an object"),
        ({**DECISION_LOG, "lists": {"privacy": {"risk": [1]}}}, "lists must map names"),
        ({**DECISION_LOG, "phone": {"province": ["CN-JS"]}}, "phone.province must be a string"),
        ({**DECISION_LOG, "ip": "58.216.1.2"}, "ip must be an object"),
        ({**DECISION_LOG, "ip": {"version": "4"}}, "ip.version must be a number 0-6"),
        ({**DECISION_LOG, "ip": {"asn": 2**40}}, "ip.asn must be a number"),
        ({**DECISION_LOG, "ip": {"city": {"zh": "常州"}}}, "ip.city must be a string"),
    ],
)
def test_fields_of_the_wrong_type_are_refused(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplayInputError, match=f"^line 3: {message}"):
        parse_line(obj, 3, PARSER, "t")


def test_a_decision_log_line_keeps_where_the_number_and_the_address_were() -> None:
    ip = {"version": 4, "country": "CN", "province": "CN-JS", "city": "常州", "asn": 4134}
    phone = {**DECISION_LOG["phone"], "province": "CN-BJ", "city": "北京"}  # type: ignore[dict-item]
    ev = parse_line({**DECISION_LOG, "phone": phone, "ip": ip}, 1, PARSER, "t")
    assert (ev.phone.province, ev.phone.city) == ("CN-BJ", "北京")
    assert (ev.ip.province, ev.ip.city, ev.ip.asn, ev.ip.version) == ("CN-JS", "常州", 4134, 4)
    assert parse_line(DECISION_LOG, 1, PARSER, "t").ip is NO_IP


def test_a_recorded_list_of_null_is_no_membership() -> None:
    ev = parse_line({**DECISION_LOG, "lists": {"a": None, "b": {"risk": 2}}}, 1, PARSER, "t")
    assert ev.recorded_lists == {"b": {"risk": "2"}}


def test_every_bad_line_is_named_and_the_good_ones_kept(tmp_path: Path) -> None:
    lines = [
        json.dumps(EVENT),
        "[" * 100_000 + "]" * 100_000,  # json.loads would raise RecursionError
        "{not json",
        json.dumps({**EVENT, "event": {**EVENT["event"], "attributes": [1]}}),
        json.dumps(EVENT),
    ]
    events, errors = parse_lines(tmp_path / "e.jsonl", 10, lines, PARSER, "t")
    assert [e.line for e in events] == [10, 14]
    bad = BadLines(tmp_path / "e.jsonl")
    bad.extend(errors)
    assert bad.lines() == [
        BadLine(11, "nested too deeply"),
        BadLine(12, "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        BadLine(13, "event.attributes must be an object"),
    ]


def test_bad_lines_stop_past_their_limit(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    bad = BadLines(path, limit=2)
    bad.extend([f"{path}:4: a", f"{path}:9: b"])
    with pytest.raises(TooManyBadLines) as err:
        bad.extend([f"{path}:12: c", f"{path}:13: d"])
    assert err.value.first_over == BadLine(12, "c")
