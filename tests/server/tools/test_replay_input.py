"""Event times replay refuses line by line instead of failing the whole run later."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.phone import PhoneParser
from server.tools.replay import ReplayInputError, parse_line

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
    ],
    ids=["nan", "inf", "-inf", "far future", "before 1970", "year 1"],
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
