"""The second version of the language end to end: age(), per (number, app), scores,
priorities and a default action decided by a real server with memory and Redis state."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest_redis import RedisServer
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis
from support import Running, running_server
from support import request as rq

from server.api import decision_pb2 as pb

POLICY = """
settings {
    default_action = allow
    review_score = 50
}

aggregate codes_per_app = count(per (number, app), over 1h) where event.scene == "sms_code"

rule new_number {
    when age(per number) < 10m
    score 30
    reason "first seen {age(per number)} ago"
}

rule busy_for_one_app {
    when codes_per_app > 3
    score 30
    reason "{codes_per_app} codes for {event.app_id}"
}

rule partner_app {
    when event.app_id == "partner" and codes_per_app > 5
    then allow
    priority 10
}

rule scripted {
    when event.attributes["ua"].matches(r"^curl/")
    then block
}
"""


def at(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class Clock:
    """The server's receipt clock, moved by the test: age() reads it (docs/state.md §6)."""

    def __init__(self) -> None:
        self.now = time.time() - 3000

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
async def server(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer, clock: Clock
) -> AsyncIterator[Running]:
    rules = tmp_path / "rules"
    (rules / "acme").mkdir(parents=True)
    (rules / "acme" / "policy.rf").write_text(POLICY, encoding="utf-8")
    if request.param == "memory":
        async with running_server(rules, clock=clock) as s:
            yield s
        return
    client = Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    async with running_server(
        rules, state=redis_server.url, hash_key=b"v2-test-key", state_timeout_ms=2000, clock=clock
    ) as s:
        yield s


def code(number: str, app: str, when: float, **attrs: str) -> pb.EvaluateRequest:
    event = pb.Event(scene="sms_code", app_id=app, occurred_at=at(when), attributes=attrs)
    return rq(number, tenant="acme", event=event, explain=True)


async def test_age_and_a_composite_key_add_up_to_a_review(server: Running, clock: Clock) -> None:
    stub = server.decisions
    t0 = clock.now
    number = "+8613800138000"
    first = await stub.Evaluate(code(number, "shop", t0), timeout=5)
    # A new number alone is 30 points: below the review score.
    assert first.action == pb.ACTION_ALLOW
    assert first.score == 30
    assert [m.rule for m in first.matches] == ["new_number"]
    assert first.matches[0].reason == "first seen 0s ago"
    for i in range(1, 4):
        clock.now = t0 + i
        resp = await stub.Evaluate(code(number, "shop", t0 + i), timeout=5)
    # The fourth code for the same app within minutes of the first sighting: 60 points.
    assert resp.action == pb.ACTION_REVIEW
    assert resp.score == 60
    assert resp.decided_by == "score 60 reached 50"
    # Another app counts apart (per (number, app)).
    clock.now = t0 + 5
    other = await stub.Evaluate(code(number, "ride", t0 + 5), timeout=5)
    assert [m.rule for m in other.matches] == ["new_number"]
    # Later, the number is no longer new: the busy app alone stays under the review score.
    clock.now = t0 + 1200
    later = await stub.Evaluate(code(number, "shop", t0 + 1200), timeout=5)
    assert [m.rule for m in later.matches] == ["busy_for_one_app"]
    assert later.action == pb.ACTION_ALLOW


async def test_a_back_dated_event_does_not_age_a_number(server: Running, clock: Clock) -> None:
    """age() runs on the receipt clock: an event stamped 20 h back (within the lateness
    bound) after a first sighting now reads 0s, not 20 h (docs/state.md §6)."""
    stub = server.decisions
    number = "+8613800138111"
    await stub.Evaluate(code(number, "shop", clock.now), timeout=5)
    old = await stub.Evaluate(code(number, "shop", clock.now - 20 * 3600), timeout=5)
    assert {a.id: a.value for a in old.aggregates}["age(per number)"] == 0
    assert "new_number" in [m.rule for m in old.matches]


async def test_priority_and_regex_over_grpc(server: Running) -> None:
    stub = server.decisions
    t0 = time.time() - 3000
    number = "+8613900139000"
    for i in range(6):
        resp = await stub.Evaluate(code(number, "partner", t0 + i), timeout=5)
    assert resp.action == pb.ACTION_ALLOW  # the partner's priority wins over the score
    assert resp.decided_by == "rule partner_app (priority 10)"
    assert {m.rule: m.priority for m in resp.matches}["partner_app"] == 10
    scripted = await stub.Evaluate(code("+8613700137000", "shop", t0, ua="curl/8.5"), timeout=5)
    assert scripted.action == pb.ACTION_BLOCK
    browser = await stub.Evaluate(code("+8613700137001", "shop", t0, ua="Mozilla/5.0"), timeout=5)
    assert browser.action == pb.ACTION_ALLOW
