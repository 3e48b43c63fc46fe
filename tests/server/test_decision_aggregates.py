"""Aggregates over the server's own past decisions end to end (docs/state.md §11): a real
server on memory and on Redis counts what it decided, a request never counts its own
decision, dry runs and retries record nothing, and ``ringfence replay`` of the same events
reads the same values."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest_redis import RedisServer
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis
from support import RINGFENCE, Running, running_server
from support import request as rq

from server.api import decision_pb2 as pb

POLICY = """
aggregate blocked_today = count(per device, over today) where decision.action == "block"
aggregate flagged_1h = count(per device, over 1h) where decision.action != "allow"
aggregate attempts = count(per device, over 1h)

rule card_test {
    when event.scene == "card_test"
    then block
}

rule odd {
    when event.scene == "odd"
    then review
}

rule repeat_offender {
    when blocked_today >= 3
    then block
    reason "{blocked_today} blocks on this device today"
}
"""

# The server's receipt clock: fixed, so the replay below sees the same event times.
NOW = 1_772_000_000.0
IDS = ("blocked_today", "flagged_1h", "attempts")

# (scene, device, action, blocked_today, flagged_1h, attempts): in order, one second apart.
# A request reads the decisions made before it, never its own.
SEQUENCE = [
    ("login", "d1", pb.ACTION_ALLOW, 0, 0, 1),
    ("card_test", "d1", pb.ACTION_BLOCK, 0, 0, 2),
    ("card_test", "d1", pb.ACTION_BLOCK, 1, 1, 3),
    ("odd", "d1", pb.ACTION_REVIEW, 2, 2, 4),
    ("card_test", "d1", pb.ACTION_BLOCK, 2, 3, 5),
    # Three blocks on d1 before it: blocked itself, by repeat_offender.
    ("login", "d1", pb.ACTION_BLOCK, 3, 4, 6),
    ("login", "d2", pb.ACTION_ALLOW, 0, 0, 1),
    # repeat_offender's own block was recorded too.
    ("login", "d1", pb.ACTION_BLOCK, 4, 5, 7),
]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def server(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[Running]:
    rules = tmp_path / "rules"
    (rules / "acme").mkdir(parents=True)
    (rules / "acme" / "policy.rf").write_text(POLICY, encoding="utf-8")
    if request.param == "memory":
        async with running_server(rules, clock=Clock()) as s:
            yield s
        return
    client = Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    async with running_server(
        rules,
        state=redis_server.url,
        hash_key=b"decisions-test-key",
        state_timeout_ms=2000,
        clock=Clock(),
    ) as s:
        yield s


def when(i: int) -> float:
    return NOW - 600 + i


def at(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def ask(i: int, scene: str, device: str, **kw: Any) -> pb.EvaluateRequest:
    event = pb.Event(scene=scene, device_id=device, occurred_at=at(when(i)))
    return rq(f"+86138000{i:05d}", tenant="acme", event=event, explain=True, **kw)


def values(resp: pb.EvaluateResponse) -> tuple[int, ...]:
    got = {a.id: a.value for a in resp.aggregates if a.known}
    return tuple(got[i] for i in IDS)


async def test_past_decisions_are_counted_and_never_the_request_s_own(server: Running) -> None:
    stub = server.decisions
    # A dry run decides (and reads) like the real thing and records nothing.
    for _ in range(3):
        dry = await stub.Evaluate(ask(0, "card_test", "d1", dry_run=True), timeout=5)
        assert dry.action == pb.ACTION_BLOCK
        assert values(dry) == (0, 0, 1)
    for i, (scene, device, action, *expected) in enumerate(SEQUENCE):
        resp = await stub.Evaluate(ask(i, scene, device, request_id=f"r{i}"), timeout=5)
        assert (resp.action, values(resp)) == (action, tuple(expected)), (i, scene, device)
        if i == 4:
            # A retry answers as the first attempt did and records its decision once.
            again = await stub.Evaluate(ask(i, scene, device, request_id=f"r{i}"), timeout=5)
            assert again.replayed
            assert values(again) == tuple(expected)
    last = resp
    assert [m.rule for m in last.matches] == ["repeat_offender"]
    assert last.matches[0].reason == "4 blocks on this device today"


def test_replay_reads_what_the_server_read(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "acme").mkdir(parents=True)
    (rules / "acme" / "policy.rf").write_text(POLICY, encoding="utf-8")
    lines = [
        {
            "tenant": "acme",
            "request_id": f"r{i}",
            "phone_number": f"+86138000{i:05d}",
            "event": {"scene": scene, "device_id": device, "occurred_at": when(i)},
        }
        for i, (scene, device, *_) in enumerate(SEQUENCE)
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    out_path = tmp_path / "decisions.jsonl"
    args = ["replay", str(events), "--rules", str(rules), "--decisions", str(out_path)]
    out = subprocess.run(
        [str(RINGFENCE), *args, "--tenant", "acme"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out_path.read_text().splitlines()]
    words = {pb.ACTION_ALLOW: "allow", pb.ACTION_REVIEW: "review", pb.ACTION_BLOCK: "block"}
    assert [(r["action"], tuple(a["value"] for a in r["aggregates"])) for r in rows] == [
        (words[action], tuple(expected)) for _, _, action, *expected in SEQUENCE
    ]
