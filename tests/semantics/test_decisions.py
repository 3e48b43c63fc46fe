"""Aggregates over past decisions (docs/state.md §11), path against path on random traffic.

The reference model does not compute actions (its policies are probes of values), so it
cannot say what a decision feeds: here one fixed policy, whose rules read those
aggregates so that decisions feed back into later ones, is run over random traffic on
memory, Redis, Redis Cluster, EvaluateBatch, EvaluateStream and ``ringfence replay``, and
every answer must equal unary's on memory, field by field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from semantics import paths
from semantics.events import TENANTS, streams
from semantics.model import Event, event_time
from semantics.paths import Answer, Live, examples, install
from semantics.test_differential import Via, comparable

POLICY = """
aggregate blocked_today = count(per device, over today) where decision.action == "block"
aggregate flagged_10m = count(per number, over 10m) where decision.action != "allow"
aggregate review_apps = distinct(event.app_id, per device, over 1h)
    where decision.action == "review" and event.scene != "login"
aggregate calls = count(per device, over 1h)
aggregate blocked_earlier = count(per device, over today) where decision.action == "block"

rule busy {
    when calls >= 3
    then review
}

rule register_after_review {
    when event.scene == "register" and review_apps >= 1
    then block
}

rule repeat_blocks {
    when blocked_today >= 2 or blocked_earlier.ago(1h) >= 1
    then block
}

rule flagged_number {
    when flagged_10m >= 2
    then block
}
"""
FILES = {"policy.rf": POLICY}


def in_time(stream: Sequence[Event]) -> tuple[Event, ...]:
    """The stream with no back-dated events: backends may drop history beyond what the
    policy reads (§9), so only traffic in time order gives equal values everywhere."""
    return tuple(
        replace(ev, occurred_at=None)
        if ev.occurred_at is not None and ev.occurred_at < ev.received_at
        else ev
        for ev in stream
    )


def answers(live: Live, stream: Sequence[Event], via: Via) -> list[Answer]:
    prefix = install(live.server, live.ws, dict.fromkeys(TENANTS, FILES))
    return via(live.server, stream, prefix)


def same(name: str, want: list[Answer], got: list[Answer], stream: Sequence[Event]) -> None:
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
        assert comparable(a) == comparable(b), f"{name}, event {i} ({stream[i]}): {b} != {a}"


@examples(12)
@given(stream=streams())
def test_batch_and_stream_answer_as_unary(memory: Live, stream: tuple[Event, ...]) -> None:
    unary = answers(memory, stream, paths.unary)
    for via in (paths.batch, paths.stream):
        same(via.__name__, unary, answers(memory, stream, via), stream)


@pytest.mark.redis
@examples(12)
@given(stream=streams())
def test_redis_answers_as_memory(memory: Live, redis: Live, stream: tuple[Event, ...]) -> None:
    stream = in_time(stream)
    same("redis", answers(memory, stream, paths.unary), answers(redis, stream, paths.unary), stream)


@pytest.mark.redis
@examples(8)
@given(stream=streams())
def test_redis_cluster_answers_as_memory(
    memory: Live, cluster: Live, stream: tuple[Event, ...]
) -> None:
    stream = in_time(stream)
    want = answers(memory, stream, paths.unary)
    same("cluster", want, answers(cluster, stream, paths.unary), stream)


@examples(8)
@given(stream=streams())
def test_replay_reads_what_unary_read(
    tmp_path: Path, memory: Live, stream: tuple[Event, ...]
) -> None:
    """Traffic in event-time order, received when it occurred, no dry runs or retries:
    replay (r = t) decides each event with the values the server read."""
    events = sorted(
        (
            replace(ev, occurred_at=t, received_at=t, request_id="")
            for ev in stream
            if ev.tenant == "a" and not ev.dry_run and (t := event_time(ev)) is not None
        ),
        key=lambda ev: ev.received_at,
    )
    work = tmp_path / f"replay-{len(list(tmp_path.iterdir()))}"
    ws = paths.Workspace(work / "rules")
    ws.write("a", FILES)
    got = paths.replay(ws.root, "a", events, work)
    want = answers(memory, events, paths.unary)
    for i, (a, values) in enumerate(zip(want, got, strict=True)):
        assert a.values == values, f"replay, event {i} ({events[i]}): {values} != {a.values}"
