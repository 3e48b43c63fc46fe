"""One test per wrong value analysts met, each as a user would write it (docs/state.md):
filters that shared a count, sustained() blinded by a restart, age() made old by a
back-dated event, three defaults for a first sighting, and window edges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from semantics import paths
from semantics.events import EPOCH, POOL
from semantics.model import LATENESS_S, Aggregate, Event, Filter, Model, Policy, assumed
from semantics.paths import Answer, Live, install, to_request

from server.api import decision_pb2 as pb

NUMBER = POOL[4]  # +8613800138000
T0 = EPOCH + 10 * 86_400 + 3_600.25
BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]
SHARED = [pytest.param(n, marks=pytest.mark.redis) for n in ("redis", "cluster")]


def event(
    at: float,
    scene: str = "",
    app: str = "",
    *,
    occurred_at: float | None = None,
    device_id: str = "",
    dry_run: bool = False,
) -> Event:
    return Event(
        tenant="a",
        phone=NUMBER,
        scene=scene,
        app_id=app,
        device_id=device_id,
        occurred_at=occurred_at,
        received_at=at,
        dry_run=dry_run,
    )


def decide(live: Live, policy: str, events: Sequence[Event]) -> list[Answer]:
    prefix = install(live.server, live.ws, {"a": {"policy.rf": policy}})
    return paths.unary(live.server, events, prefix)


def action(answer: Answer) -> str:
    assert answer.response is not None, answer.code
    return pb.Action.Name(answer.response.action)


def backend(request: pytest.FixtureRequest, name: str) -> Live:
    live = request.getfixturevalue(name)
    assert isinstance(live, Live)
    return live


# 1. Aggregates that differ only in their `where` filter count apart -------------------

FILTERED = """
aggregate codes = count(per number, over 1d) where event.scene == "sms_code"
aggregate logins = count(per number, over 1d) where event.scene == "login"
aggregate code_apps = distinct(event.app_id, per number, over 1d) where event.scene == "sms_code"
aggregate reg_apps = distinct(event.app_id, per number, over 1d) where event.scene == "register"

rule code_farm {
    when codes >= 3 and logins < 0.5 * codes and code_apps >= 3 and reg_apps <= 1
    then review
    reason "{logins} logins for {codes} codes in {code_apps} apps"
}
"""
SIGN_UP = [
    event(T0, "register", "shop"),
    event(T0 + 60, "sms_code", "shop"),
    event(T0 + 120, "sms_code", "ride"),
    event(T0 + 180, "sms_code", "food"),
    event(T0 + 240, "login", "shop"),
]
AFTER_SIGN_UP = {"codes": 3, "logins": 1, "code_apps": 3, "reg_apps": 1}


def _scene(scene: str) -> Filter:
    return Filter(canonical=("==", "event.scene", scene), test=lambda f: f.event.scene == scene)


def test_the_model_reads_the_sign_up_as_an_analyst_does() -> None:
    count = Aggregate(name="codes", kind="count", keys=(("number", ""),), window=86_400)
    aggs = (
        replace(count, where=_scene("sms_code")),
        replace(count, name="logins", where=_scene("login")),
        replace(count, name="code_apps", kind="distinct", field="app_id", where=_scene("sms_code")),
        replace(count, name="reg_apps", kind="distinct", field="app_id", where=_scene("register")),
    )
    model = Model()
    model.load("a", Policy(aggregates=aggs))
    last = [model.decide(ev) for ev in SIGN_UP][-1]
    assert {k: v[0] for k, v in last.values.items()} == AFTER_SIGN_UP


@pytest.mark.parametrize("name", ["memory", *SHARED])
def test_filters_count_apart(request: pytest.FixtureRequest, name: str) -> None:
    answers = decide(backend(request, name), FILTERED, SIGN_UP)
    got = dict(answers[-1].values)
    assert got == AFTER_SIGN_UP, f"a register, three codes and a login read {got}"
    assert action(answers[-1]) == "ACTION_REVIEW"


def test_filters_count_apart_in_replay(tmp_path: Path) -> None:
    ws = paths.Workspace(tmp_path / "rules")
    ws.write("a", {"policy.rf": FILTERED})
    stamped = [replace(ev, occurred_at=ev.received_at) for ev in SIGN_UP]
    got = dict(paths.replay(ws.root, "a", stamped, tmp_path)[-1])
    assert got == AFTER_SIGN_UP, f"a register, three codes and a login read {got}"


# 2. sustained() keeps its history across a restart (shared state) -------------------

SUSTAINED = """
aggregate hits_1h = count(per number, over 1h)

rule bulk {
    when sustained(hits_1h > 5, 3h)
    then block
}
"""


@pytest.mark.parametrize("name", SHARED)
def test_sustained_blocks_before_and_after_a_restart(
    request: pytest.FixtureRequest, name: str
) -> None:
    live = backend(request, name)
    # One a minute or so for three hours: more buckets than one hour's window holds.
    busy = [event(T0 + i * 50) for i in range(217)]
    prefix = install(live.server, live.ws, {"a": {"policy.rf": SUSTAINED}})
    before = paths.unary(live.server, busy, prefix)[-1]
    assert action(before) == "ACTION_BLOCK", f"before the restart: {dict(before.values)}"
    live.restart()
    end = busy[-1].received_at
    after = paths.unary(live.server, [event(end + s) for s in (5, 10, 15)], prefix)
    for i, answer in enumerate(after, 1):
        shown = f"request {i} after the restart: {action(answer)} {dict(answer.values)}"
        assert action(answer) == "ACTION_BLOCK", shown


# 3. age() reads the receipt clock; events older than the lateness bound are refused --

AGE = """
rule old_number {
    when age(per number) > 30d
    then allow override
}

rule new_number {
    when age(per number) < 10m
    then review
}
"""


def bad_fields(err: grpc.RpcError) -> list[str]:
    metadata: Any = err.trailing_metadata()
    for key, value in metadata or ():
        if key == "grpc-status-details-bin":
            detail = error_details_pb2.BadRequest()
            for any_ in status_pb2.Status.FromString(value).details:
                if any_.Unpack(detail):
                    return [v.field for v in detail.field_violations]
    return []


@pytest.mark.parametrize("name", BACKENDS)
def test_a_five_year_old_stamp_is_refused_and_ages_nothing(
    request: pytest.FixtureRequest, name: str
) -> None:
    live = backend(request, name)
    prefix = install(live.server, live.ws, {"a": {"policy.rf": AGE}})
    live.server.clock.now = T0
    old = event(T0, "login", occurred_at=T0 - 5 * 365 * 86_400)
    try:
        live.server.decisions.Evaluate(to_request(old, prefix), timeout=paths.GUARD_S)
        code, fields = grpc.StatusCode.OK, []
    except grpc.RpcError as exc:
        code, fields = exc.code(), bad_fields(exc)
    later = paths.unary(live.server, [event(T0 + 5, "login"), event(T0 + 65, "login")], prefix)
    ages = [a.values["age(per number)"] for a in later]
    said = f"a stamp five years old: {code.name} {fields}; ages after it {ages}"
    assert code is grpc.StatusCode.INVALID_ARGUMENT, said
    assert fields == ["event.occurred_at"], said
    assert ages == [0, 60], said
    assert [action(a) for a in later] == ["ACTION_REVIEW"] * 2


@pytest.mark.parametrize("name", BACKENDS)
def test_a_back_dated_first_sighting_is_new(request: pytest.FixtureRequest, name: str) -> None:
    """Within the bound an event may say it happened 23 h ago: the number is still first
    seen now, on the receipt clock (§6)."""
    live = backend(request, name)
    events = [
        event(T0, "login", occurred_at=T0 - 23 * 3_600),
        event(T0 + 10, "login", occurred_at=T0 - 22 * 3_600),
        event(T0 + 20, "login"),
    ]
    ages = [decided.values["age(per number)"] for decided in decide(live, AGE, events)]
    assert ages == [0, 10, 20], f"a first sighting stamped 23 h back, then 10 s and 20 s: {ages}"


@pytest.mark.parametrize("name", BACKENDS)
def test_the_lateness_bound_is_exact(request: pytest.FixtureRequest, name: str) -> None:
    """Exactly L old is accepted; a quarter second more is refused (§1)."""
    live = backend(request, name)
    events = [
        event(T0, "login", occurred_at=T0 - LATENESS_S),
        event(T0 + 1, "login", occurred_at=T0 + 1 - LATENESS_S - 0.25),
    ]
    codes = [a.code.name for a in decide(live, AGE, events)]
    assert codes == ["OK", "INVALID_ARGUMENT"], f"1d old, then 1d and a quarter second: {codes}"


# 4. A first sighting is 0 s old on every path -----------------------------------------

FIRST = """
rule brand_new {
    when age(per number) == 0s and age(per device) == 0s
    then review
}
"""
FIRST_CASE = """
[[case]]
name = "a number and a device seen for the first time"
phone = "+8613800138000"
event = { scene = "login", device_id = "d1", occurred_at = 1894320000 }
[case.expect]
action = "review"
rules = ["brand_new"]
"""


def test_a_first_sighting_is_0s_old_in_the_server(memory: Live) -> None:
    (answer,) = decide(memory, FIRST, [event(T0, "login", device_id="d1")])
    assert dict(answer.values) == {"age(per number)": 0, "age(per device)": 0}
    assert action(answer) == "ACTION_REVIEW"


def test_a_first_sighting_is_0s_old_in_eval(tmp_path: Path) -> None:
    ws = paths.Workspace(tmp_path / "rules")
    ws.write("a", {"policy.rf": FIRST})
    ev = event(T0, "login", device_id="d1", occurred_at=float(int(T0)))
    shown = dict(paths.eval_values(ws.root, "a", ev))
    assert shown == {"age(per number)": 0, "age(per device)": 0}, f"eval shows {shown}"
    assert assumed(Policy(aggregates=(), ages=("number", "device")), ev).values == {
        "age(per number)": (0, 0),
        "age(per device)": (0, 0),
    }


def test_a_first_sighting_is_0s_old_in_rule_tests(tmp_path: Path) -> None:
    ws = paths.Workspace(tmp_path / "rules")
    ws.write("a", {"policy.rf": FIRST, "tests/first.toml": FIRST_CASE})
    passed, text = paths.rule_tests(ws.root, "a")
    assert passed, text


# 10. Window edges are where §4 puts them ----------------------------------------------

EDGE_CASES = [
    # window, seconds, where the probe sits in its bucket, age of the old event, counted
    ("1d", 86_400, 1_439, 24 * 3_600 + 600, True),  # 24h10m: the old bucket is read whole
    ("1d", 86_400, 1_439, 24 * 3_600 + 1_800, False),  # 24h30m: never
    ("1d", 86_400, 0, 24 * 3_600 + 600, False),  # on a bucket edge the window is exact
    ("1d", 86_400, 0, 24 * 3_600, False),  # exactly W old on an edge: outside
    ("1d", 86_400, 0, 24 * 3_600 - 0.25, True),
    ("1h", 3_600, 30, 3_600 + 20, True),  # 1h00m20s, half a minute into the bucket
    ("1h", 3_600, 0, 3_600 + 20, False),
    ("1h", 3_600, 30, 3_600 + 60, False),  # 1h01m: beyond the bucket
    ("10m", 600, 5, 600 + 4, True),
    ("10m", 600, 5, 600 + 6, False),
]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(("text", "size", "phase", "age", "counted"), EDGE_CASES)
def test_window_edges(
    request: pytest.FixtureRequest,
    name: str,
    text: str,
    size: int,
    phase: float,
    age: float,
    counted: bool,
) -> None:
    width = size // 60
    probe_at = (int(T0) // width + 100) * width + phase
    events = [event(probe_at - age, "login"), event(probe_at, "login", dry_run=True)]
    policy = (
        f"aggregate hits = count(per number, over {text})\nrule r {{ when hits > 9 then block }}\n"
    )
    hits = Aggregate(name="hits", kind="count", keys=(("number", ""),), window=size)
    model = Model()
    model.load("a", Policy(aggregates=(hits,)))
    assert [model.decide(ev).values["hits"] for ev in events][-1] == (1 + counted,) * 2
    got = decide(backend(request, name), policy, events)[-1].values["hits"]
    assert got == 1 + counted, f"over {text}, {age:g} s old, probe {phase:g} s into its bucket"
