"""Every path against the reference model, value by value, on random policies and traffic
(docs/state.md, "What every value means"). A failure names the event, the aggregate id, the
model's value (a range where §9 lets history be dropped) and the product's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import assume, given
from semantics import paths
from semantics.events import IPS, POOL, TENANTS, streams
from semantics.model import Event, Model, Outcome, assumed, event_time, ip_city, network
from semantics.paths import Answer, Live, ServerThread, examples, install, mismatches, report
from semantics.policies import Generated, policies

from server.phone import PhoneParser, SegmentTable

# A live path: (server, events, tenant prefix) -> what it answered for each event.
Via = Callable[[ServerThread, Sequence[Event], str], list[Answer]]


def modelled(gen: Generated, stream: Sequence[Event]) -> list[Outcome]:
    model = Model()
    for tenant in TENANTS:
        model.load(tenant, gen.model(tenant))
    return [model.decide(ev) for ev in stream]


def run_live(live: Live, gen: Generated, stream: Sequence[Event], via: Via) -> list[Answer]:
    prefix = install(live.server, live.ws, {t: gen.files(t) for t in TENANTS})
    got = via(live.server, stream, prefix)
    meaning = {t: gen.meaning() for t in TENANTS}
    found = mismatches(stream, modelled(gen, stream), got, meaning)
    assert not found, report(f"{via.__name__} on {live.state.split(':')[0]}", found, gen.text())
    return got


def test_the_pool_is_what_the_parser_says() -> None:
    """The model's phone facts are the server's parser's and segment table's."""
    parser = PhoneParser(SegmentTable.load(None))
    for phone in POOL:
        facts = parser.parse(phone.e164, "CN")
        got = (facts.e164, facts.national_number, facts.segment_prefix, facts.segment_kind)
        assert got == (phone.e164, phone.national, phone.segment, phone.segment_kind)


def test_the_addresses_are_what_the_databases_say(tmp_path: Path) -> None:
    """The model's networks and cities are the language's and the IP database's."""
    from dsl.addresses import ip_network
    from server.geo.ipdb import IpLocator

    locator = IpLocator.open([paths.ip_database(tmp_path / "rules")])
    for ip in IPS:
        assert locator.facts(ip).city == ip_city(ip), ip
        for bits in (24, 64):
            assert ip_network(ip, bits) == network(ip, bits), (ip, bits)
    locator.close()


@examples(40)
@given(gen=policies(), stream=streams())
def test_memory(memory: Live, gen: Generated, stream: tuple[Event, ...]) -> None:
    run_live(memory, gen, stream, paths.unary)


@pytest.mark.redis
@examples(20)
@given(gen=policies(), stream=streams())
def test_redis(redis: Live, gen: Generated, stream: tuple[Event, ...]) -> None:
    run_live(redis, gen, stream, paths.unary)


@pytest.mark.redis
@examples(12)
@given(gen=policies(), stream=streams())
def test_redis_cluster(cluster: Live, gen: Generated, stream: tuple[Event, ...]) -> None:
    run_live(cluster, gen, stream, paths.unary)


def comparable(answer: Answer) -> object:
    """A response without what differs by design between two tenants' runs."""
    if answer.response is None:
        return answer.code
    resp = type(answer.response)()
    resp.CopyFrom(answer.response)
    resp.ClearField("request_id")
    resp.ClearField("policy_version")
    return resp


@examples(15)
@given(gen=policies(), stream=streams())
def test_batch_and_stream_answer_as_unary(
    memory: Live, gen: Generated, stream: tuple[Event, ...]
) -> None:
    """Each against the model, and every response the same as unary's, field by field."""
    unary = run_live(memory, gen, stream, paths.unary)
    for via in (paths.batch, paths.stream):
        got = run_live(memory, gen, stream, via)
        for i, (a, b) in enumerate(zip(unary, got, strict=True)):
            assert comparable(a) == comparable(b), f"{via.__name__}, event {i}: {b} != {a}"


def offline(stream: Sequence[Event], tenant: str) -> list[Event]:
    """A tenant's recorded traffic as a replay file holds it: every event that was not
    refused or a dry run, stamped with its event time."""
    return [
        replace(ev, occurred_at=t)
        for ev in stream
        if ev.tenant == tenant and not ev.dry_run and (t := event_time(ev)) is not None
    ]


@examples(10)
@given(gen=policies(), stream=streams())
def test_replay(tmp_path: Path, gen: Generated, stream: tuple[Event, ...]) -> None:
    """`ringfence replay` decides in event-time order with r = t (§1)."""
    work = tmp_path / f"replay-{len(list(tmp_path.iterdir()))}"
    ws = paths.Workspace(work / "rules")
    ws.write("a", gen.files("a"))
    events = offline(stream, "a")
    model = Model(offline=True)
    model.load("a", gen.model("a"))
    order = sorted(range(len(events)), key=lambda i: (events[i].occurred_at, i))
    want: list[Outcome] = [Outcome()] * len(events)
    for i in order:
        want[i] = model.decide(events[i])
    got = [Answer(values=v) for v in paths.replay(ws.root, "a", events, work)]
    found = mismatches(events, want, got, {"a": gen.meaning()})
    assert not found, report("replay", found, gen.text())


@examples(8)
@given(gen=policies(), stream=streams(max_events=3, flood=False))
def test_eval_and_rule_tests_assume_the_first_event(
    tmp_path: Path, gen: Generated, stream: tuple[Event, ...]
) -> None:
    """`ringfence eval` and rule tests without given values: each value is the event's own
    (§7), and the probe rules that fire say which."""
    work = tmp_path / f"eval-{len(list(tmp_path.iterdir()))}"
    ws = paths.Workspace(work / "rules")
    events = [
        replace(ev, tenant="a", occurred_at=float(int(t)), dry_run=False)
        for ev in stream
        if (t := event_time(ev)) is not None
    ]
    policy = gen.model("a")
    want = [assumed(policy, ev) for ev in events]
    ids = gen.value_ids()
    cases = ""
    for i, (ev, outcome) in enumerate(zip(events, want, strict=True)):
        fired = [
            gen.probe_rules(j)[lo]
            for j, v in enumerate(ids)
            if (lo := outcome.values[v][0]) == outcome.values[v][1] and lo in (0, 1)
        ]
        cases += paths.rule_test_case(ev, f"event {i}", fired)
    ws.write("a", {**gen.files("a"), "tests/cases.toml": cases})
    decimals = gen.decimal_ids()
    got = [Answer(values=paths.eval_values(ws.root, "a", ev, decimals)) for ev in events]
    found = mismatches(events, want, got, {"a": gen.meaning()})
    assert not found, report("ringfence eval", found, gen.text())
    passed, text = paths.rule_tests(ws.root, "a")
    first = next((line.strip() for line in text.splitlines() if "expected" in line), text[:200])
    legend = ", ".join(f"v{j}_N: {v} == N" for j, v in enumerate(ids))
    assert passed, f"rule tests: {first}\n({legend})\n{text}\n--- policy ---\n{gen.text()}"


@examples(8)
@given(gen=policies(), stream=streams(max_events=12, flood=False))
def test_rule_tests_with_a_history(
    tmp_path: Path, gen: Generated, stream: tuple[Event, ...]
) -> None:
    """A rule test's `history` is decided in order through a fresh state before the case's
    event (§7): the probe rules that fire on the case say every value matches the model."""
    work = tmp_path / f"history-{len(list(tmp_path.iterdir()))}"
    ws = paths.Workspace(work / "rules")
    events = [replace(ev, request_id="") for ev in offline(stream, "a")]
    assume(len(events) >= 2)
    *history, last = events
    model = Model(offline=True)
    model.load("a", gen.model("a"))
    for ev in history:
        model.decide(ev)
    want = model.decide(replace(last, dry_run=True))
    # The probes are `== 0` and `== 1`: a larger value fires neither.
    fired = [
        gen.probe_rules(j)[lo]
        for j, v in enumerate(gen.value_ids())
        if (lo := want.values[v][0]) == want.values[v][1] and lo in (0, 1)
    ]
    case = paths.rule_test_case(last, "after its history", fired, history=history)
    ws.write("a", {**gen.files("a"), "tests/history.toml": case})
    passed, text = paths.rule_tests(ws.root, "a")
    assert passed, f"rule tests with a history:\n{text}\n--- policy ---\n{gen.text()}"
