"""The replay summary: what is counted per event, how minutes become buckets, and that
every series adds up to the totals beside it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dsl.decision import Action, Decision, Match
from server.phone import PhoneParser
from server.tools.replay import ReplayEvent, parse_line
from server.tools.summary import (
    MAX_BUCKETS,
    REASONS_PER_RULE,
    Buckets,
    Diff,
    PolicyRun,
    Summary,
    summarize,
)

PARSER = PhoneParser()
SHANGHAI = ZoneInfo("Asia/Shanghai")


def event(
    at: str | float,
    phone: str = "+8613800138000",
    app: str = "shop",
    line: int = 1,
) -> ReplayEvent:
    raw = {
        "tenant": "t",
        "phone_number": phone,
        "event": {"scene": "register", "app_id": app, "occurred_at": at},
    }
    return parse_line(raw, line, PARSER, "t")


def decision(action: Action, *matches: tuple[str, Action, bool, str]) -> Decision:
    return Decision(
        action=action,
        risk_level=0,
        tags=("x",) if matches else (),
        matches=tuple(Match(rule, a, reason, shadow) for rule, a, shadow, reason in matches),
    )


ALLOW = decision(Action.ALLOW)
REVIEW = decision(Action.REVIEW, ("r", Action.REVIEW, False, "why r"))
BLOCK = decision(
    Action.BLOCK, ("b", Action.BLOCK, False, "why b"), ("s", Action.BLOCK, True, "why s")
)


@pytest.mark.parametrize(
    ("span_minutes", "width"),
    [
        (1, 60),
        (120, 60),
        (121, 300),
        (24 * 60, 900),  # a day: 96 quarter hours
        (7 * 24 * 60, 7200),
        (30 * 24 * 60, 21600),
        (365 * 24 * 60, 4 * 86400),
    ],
)
def test_buckets_are_round_and_at_most_the_limit(span_minutes: int, width: int) -> None:
    start = int(datetime(2026, 3, 1, tzinfo=SHANGHAI).timestamp()) // 60
    b = Buckets.spanning([start, start + span_minutes - 1], "Asia/Shanghai")
    assert b.width == width
    assert 1 <= len(b.labels) <= MAX_BUCKETS


def test_buckets_start_at_local_midnight_in_the_policy_time_zone() -> None:
    midnight = datetime(2026, 3, 1, tzinfo=SHANGHAI).timestamp()
    minutes = [int(midnight // 60), int(midnight // 60) + 24 * 60 - 1]
    b = Buckets.spanning(minutes, "Asia/Shanghai")
    assert b.labels[0] == "2026-03-01 00:00"
    assert b.labels[-1] == "2026-03-01 23:45"
    assert b.index(minutes[0]) == 0
    assert b.index(minutes[1]) == len(b.labels) - 1
    # The same instants in UTC fall on 16:00 the day before.
    assert Buckets.spanning(minutes, "UTC").labels[0] == "2026-02-28 16:00"


def test_buckets_across_a_daylight_saving_change() -> None:
    # Europe/Berlin springs forward at 02:00 on 2026-03-29: local 01:59 -> 03:00.
    zone = ZoneInfo("Europe/Berlin")
    before = int(datetime(2026, 3, 29, 1, 30, tzinfo=zone).timestamp()) // 60
    after = int(datetime(2026, 3, 29, 3, 30, tzinfo=zone).timestamp()) // 60
    b = Buckets.spanning([before, after], "Europe/Berlin")
    assert b.labels[b.index(before)] == "2026-03-29 01:30"
    assert b.labels[b.index(after)] == "2026-03-29 03:30"


def test_summary_counts_actions_rules_reasons_and_minutes() -> None:
    s = Summary()
    s.add(event(0), ALLOW)
    s.add(event(30), REVIEW)
    s.add(event(90), BLOCK)
    assert s.events == 3
    assert s.actions == {"allow": 1, "review": 1, "block": 1}
    assert (s.rules["b"].live, s.rules["b"].shadow) == (1, 0)
    assert (s.rules["s"].live, s.rules["s"].shadow, s.rules["s"].mode) == (0, 1, "shadow")
    assert s.action_minutes == {(0, "allow"): 1, (0, "review"): 1, (1, "block"): 1}
    assert s.rule_minutes == {(0, "r", False): 1, (1, "b", False): 1, (1, "s", True): 1}
    assert s.top_reasons() == [
        {"rule": "b", "reason": "why b", "count": 1},
        {"rule": "r", "reason": "why r", "count": 1},
        {"rule": "s", "reason": "why s", "count": 1},
    ]


def test_distinct_reasons_per_rule_are_bounded() -> None:
    s = Summary()
    for i in range(REASONS_PER_RULE + 5):
        s.add(event(i), decision(Action.REVIEW, ("r", Action.REVIEW, False, f"{i} hits")))
    assert len(s.reasons["r"]) == REASONS_PER_RULE
    assert s.reasons_untracked == 5
    assert s.rules["r"].live == REASONS_PER_RULE + 5  # the rule's own count is exact
    s.add(event(0), decision(Action.REVIEW, ("r", Action.REVIEW, False, "0 hits")))
    assert s.reasons["r"]["0 hits"] == 2  # a text already tracked keeps counting


def test_diff_counts_by_transition_rule_segment_and_app() -> None:
    d = Diff(sample_limit=1)
    mvno = event(0, phone="+8617112340000", app="ride")
    ordinary = event(60, phone="+8613800138000", app="shop", line=2)
    d.add(mvno, REVIEW, BLOCK)  # r fired before only; b and s after only
    d.add(ordinary, ALLOW, ALLOW)  # the same: not counted
    rule_action = decision(Action.BLOCK, ("r", Action.BLOCK, False, "now blocks"))
    d.add(ordinary, REVIEW, rule_action)  # same rule, new action
    assert d.total == 2
    assert d.transitions == {("review", "block"): 2}
    assert d.by_rule == {
        "r": {"before_only": 1, "action_changed": 1},
        "b": {"after_only": 1},
        "s": {"after_only": 1},
    }
    assert d.by_segment_kind == {"mvno": 1, "mobile": 1}
    assert d.by_app == {"ride": 1, "shop": 1}
    assert d.minutes == {0: 1, 1: 1}
    assert len(d.samples) == 1


def test_samples_come_from_every_kind_of_change() -> None:
    """The first events of a file may all be one kind of change: the samples take turns
    between the transitions, changes of action first, then show in event-time order."""
    d = Diff(sample_limit=4)
    a, b = Summary(), Summary()
    same_block = decision(Action.BLOCK, ("other", Action.BLOCK, False, "x"))
    changes = [(BLOCK, same_block)] * 20  # twenty rule-only changes first ...
    changes += [(REVIEW, BLOCK)] * 3 + [(ALLOW, REVIEW)]  # ... then three of action, and one
    for i, (before, after) in enumerate(changes):
        ev = event(i, line=i)
        a.add(ev, before)
        b.add(ev, after)
        d.add(ev, before, after)
    kinds = [(s["before"]["action"], s["after"]["action"]) for s in d.samples]
    assert sorted(set(kinds)) == [("allow", "review"), ("block", "block"), ("review", "block")]
    assert [s["occurred_at"] for s in d.samples] == sorted(s["occurred_at"] for s in d.samples)
    assert d.actions_changed == 4
    out = summarize("t", PolicyRun("a", "v", a), PolicyRun("b", "v", b), d)
    assert (out["diff"]["changed"], out["diff"]["actions_changed"]) == (24, 4)
    assert out["diff"]["rules_only"] == 20


def test_a_rule_counts_the_decisions_it_was_in() -> None:
    """A rule that only adds a score has no action: what its fires came to is the
    decisions of the events it fired on."""
    s = Summary()
    scored = Match("s", Action.UNSPECIFIED, "", score=5)
    s.add(event(0), Decision(Action.REVIEW, 0, (), (scored,)))
    s.add(event(1), Decision(Action.ALLOW, 0, (), (scored,)))
    s.add(event(2), Decision(Action.REVIEW, 0, (), (scored,)))
    rule = s.to_json()["rules"]["s"]
    assert rule["actions"] == {"score": 3}
    assert rule["decided"] == {"allow": 1, "review": 2}


def test_samples_carry_only_masked_numbers() -> None:
    d = Diff()
    d.add(event(0, phone="+8617112345678"), ALLOW, BLOCK)
    sample = d.samples[0]
    assert sample["phone"] == "+8617****78"
    assert "17112345678" not in json.dumps(sample)


def run_of(events: list[tuple[float, Decision, Decision]]) -> dict[str, Any]:
    a, b, d = Summary(timezone="Asia/Shanghai"), Summary(timezone="Asia/Shanghai"), Diff()
    for i, (at, da, db) in enumerate(events):
        ev = event(at, line=i)
        a.add(ev, da)
        b.add(ev, db)
        d.add(ev, da, db)
    return summarize("t", PolicyRun("a", "v1", a), PolicyRun("b", "v2", b), d)


DAY = datetime(2026, 3, 1, tzinfo=SHANGHAI).timestamp()
EVENTS = [
    (DAY + i * 97.0, (ALLOW, REVIEW, BLOCK)[i % 3], (ALLOW, BLOCK, BLOCK)[i % 3])
    for i in range(800)
]


def test_every_series_adds_up_to_its_total() -> None:
    out = run_of(EVENTS)
    n = len(out["timeline"]["buckets"])
    for side in ("policy", "against"):
        p = out[side]
        assert p["events"] == len(EVENTS)
        for action, series in p["actions_over_time"].items():
            assert len(series) == n
            assert sum(series) == p["actions"][action]
        for kind in ("live", "shadow"):
            for rule, series in p["rules_over_time"][kind].items():
                assert sum(series) == p["rules"][rule][kind]
    assert sum(out["diff"]["over_time"]) == out["diff"]["changed"]
    assert out["diff"]["transitions"] == {"review->block": out["diff"]["changed"]}
    assert sum(out["diff"]["by_app"].values()) == out["diff"]["changed"]


def test_summary_is_plain_json() -> None:
    out = run_of(EVENTS)
    assert json.loads(json.dumps(out)) == json.loads(json.dumps(out, sort_keys=True))
    assert out["diff"]["samples"][0]["at"].startswith("2026-03-01 ")


def test_merge_equals_one_run() -> None:
    whole, first, second = Summary(), Summary(), Summary()
    for i, (at, da, _) in enumerate(EVENTS):
        ev = event(at, line=i)
        whole.add(ev, da)
        (first if i < 300 else second).add(ev, da)
    first.merge(second)
    assert first.to_json() == whole.to_json()
    assert first.action_minutes == whole.action_minutes
    assert first.rule_minutes == whole.rule_minutes
    assert first.top_reasons() == whole.top_reasons()


def test_rules_that_never_fire_are_listed(tmp_path: Any) -> None:
    from support import RULES

    from server.bundle.registry import TenantRegistry

    reg = TenantRegistry(RULES, PARSER)
    assert reg.load_sync(["demo"])[0].ok
    bundle = reg.get("demo")
    assert bundle is not None
    s = Summary.for_policy(bundle.policy)
    assert set(s.rules) == {r.name for r in bundle.policy.rules}
    strict = s.to_json()["rules"]["consecutive_numbers_strict"]
    assert (strict["mode"], strict["live"], strict["shadow"]) == ("shadow", 0, 0)
    assert s.timezone == "Asia/Shanghai"
