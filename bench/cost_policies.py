"""Policies that cost as much as an evaluation budget allows, one kind of part each, with
the state and inputs that make each cost its worst: what tests/security/test_cost_model.py
holds to the cost model's estimate; :func:`hostile` is what bench/costly_tenants.py runs on
20 tenants.

Each builder returns the policy text and a worst-case decision to measure; builders are
plain functions so the benchmark can import them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from dsl import CompiledPolicy, CompileOptions, compile_policy
from dsl.cost import CHECK_EVERY
from dsl.facts import EventFacts, Facts, PhoneFacts
from dsl.options import DEFAULT_COST_BUDGET
from dsl.patterns import MAX_INPUT
from dsl.pipeline import decide_now
from server.state.memory import MemoryBackend

START = 1_800_000_000.0
PHONE = PhoneFacts(
    "+8617012345678",
    True,
    "CN",
    segment_kind="mvno",
    segment_prefix="1701",
    national_number="17012345678",
)
# The longest attribute value request validation admits, of two letters: RE2's NFA keeps
# every thread alive on it.
UA = "".join(random.Random(7).choice("ab") for _ in range(MAX_INPUT))


# Hours of history seeded: as many windows as a budget can read of one aggregate.
HOURS = 24


def facts(at: float = START, ua: str = UA, **event: str) -> Facts:
    attrs = MappingProxyType({"ua": ua})
    return Facts("t", PHONE, EventFacts(occurred_at=at, attributes=attrs, **event))


@dataclass(frozen=True)
class Costly:
    """A policy, its estimate, and one worst-case decision of it (dry run, explained)."""

    name: str
    text: str
    policy: CompiledPolicy
    decide: Callable[[], object]


def _fill(make: Callable[[int], str], budget: int, head: str = "") -> str:
    """``head`` and as many ``make(i)`` parts as the budget allows (by the estimate)."""

    def cost(n: int) -> int:
        return _estimate(head + "".join(make(i) for i in range(n)))

    one, two = cost(1), cost(2)
    each = max(1, two - one)
    n = max(1, (budget - (one - each)) // each)
    while n > 1 and cost(n) > budget:
        n -= 1 + (n // 50)
    return head + "".join(make(i) for i in range(n))


def _estimate(text: str) -> int:
    from dsl import check_policy_report

    report = check_policy_report({"t/p.rf": text}, tenant="t", options=_UNBUDGETED)
    assert report.cost is not None, [d.header() for d in report.diagnostics if d.is_error]
    return report.cost.total


_UNBUDGETED = CompileOptions(cost_budget=0)


def _costly(name: str, text: str, state: MemoryBackend | None = None) -> Costly:
    policy = compile_policy({"t/p.rf": text}, tenant="t", options=_UNBUDGETED)
    backend = state or MemoryBackend(hash_key=b"k")
    # A new user agent every time: RE2 keeps what it learnt of the last inputs, and the
    # pattern memo what they answered.
    rng = random.Random(11)
    inputs = [
        facts(
            START + HOURS * 3600,
            device_id="new",
            ua="".join(rng.choice("ab") for _ in range(MAX_INPUT)),
        )
        for _ in range(64)
    ]
    turn = iter(range(1 << 62))

    def decide() -> object:
        at = inputs[next(turn) % len(inputs)]
        return decide_now(policy, {}, at, backend, record=False, explain=True)

    return Costly(name, text, policy, decide)


def nodes(budget: int = DEFAULT_COST_BUDGET) -> Costly:
    """Long conditions evaluated to their end, no rule firing: plain expression nodes."""
    terms = " and ".join(f'event.app_id != "x{j}"' for j in range(60))

    def rule(i: int) -> str:
        return f'rule r{i} {{\n    when {terms} and event.scene == "never"\n    then block\n}}\n'

    return _costly("nodes", _fill(rule, budget))


def firing(budget: int = DEFAULT_COST_BUDGET) -> Costly:
    """Every rule fires: matches, reasons, tags, explanation lines."""

    def rule(i: int) -> str:
        return (
            f"rule r{i} {{\n    when phone.valid\n    then review\n    risk 2\n"
            f'    tags "t{i}"\n    reason "rule {i} fired for {{phone.masked}}"\n}}\n'
        )

    return _costly("firing", _fill(rule, budget))


def patterns(budget: int = DEFAULT_COST_BUDGET) -> Costly:
    """Different patterns over the longest attribute, each one RE2 cannot run as a DFA."""

    def rule(i: int) -> str:
        # Patterns RE2's DFA cannot keep: on each new input it builds states as it reads.
        return (
            f'rule r{i} {{\n    when event.attributes["ua"].matches(r"[ab]*a[ab]{{{10 + i}}}c")'
            "\n    then block\n}\n"
        )

    return _costly("patterns", _fill(rule, budget))


def _seed(text: str, events: list[tuple[float, dict[str, str], PhoneFacts]]) -> MemoryBackend:
    policy = compile_policy({"t/p.rf": text}, tenant="t", options=_UNBUDGETED)
    backend = MemoryBackend(hash_key=b"k")
    for at, event, phone in events:
        f = Facts("t", phone, EventFacts(occurred_at=at, device_id=event.get("device_id", "")))
        backend.apply_now("t", policy.plan(f, {}), at, record=True)
    return backend


def _windows(kind: str, budget: int, state: MemoryBackend) -> Costly:
    decl = {
        "distinct": "aggregate a = distinct(event.device_id, per tenant, over 1h)\n",
        "run": "aggregate a = run(per segment, over 1h)\n",
    }[kind]

    def rule(i: int) -> str:
        return (
            f"rule r{i} {{\n    when a.ago({i % (HOURS - 1) + 1}h) > 100000\n    then block\n}}\n"
        )

    return _costly(kind, _fill(rule, budget, decl), state)


def _horizon(kind: str) -> str:
    """A policy that keeps three days of the aggregate the window policies read."""
    decl = {
        "distinct": "aggregate a = distinct(event.device_id, per tenant, over 1h)\n",
        "run": "aggregate a = run(per segment, over 1h)\n",
    }[kind]
    return decl + f"rule keep {{\n    when a.ago({HOURS - 1}h) > 0\n    then block\n}}\n"


def distinct_exact(budget: int = DEFAULT_COST_BUDGET) -> Costly:
    """distinct() windows over a key holding the most members it keeps exactly, each
    seen in every hour (so every window tests every member)."""
    events = [
        (START + h * 3600 + m, {"device_id": f"d{m}"}, PHONE)
        for h in range(HOURS)
        for m in range(0, 999, 71)
    ]
    events += [
        (START + (HOURS - 1) * 3600 + 10 + m, {"device_id": f"e{m}"}, PHONE) for m in range(985)
    ]
    return _windows("distinct", budget, _seed(_horizon("distinct"), events))


def distinct_sketched(budget: int = DEFAULT_COST_BUDGET) -> Costly:
    """distinct() windows over a key past the exact cap: a merge of 61 sketches each."""
    events = [
        (START + i * (HOURS * 3600 / 6_000), {"device_id": f"d{i}"}, PHONE) for i in range(6_000)
    ]
    return _windows("distinct", budget, _seed(_horizon("distinct"), events))


def runs(budget: int = DEFAULT_COST_BUDGET) -> Costly:
    """run() windows where the number has 1,000 neighbours each way in every hour."""
    numbers = [
        PhoneFacts(
            f"+86{17012345678 + d}",
            True,
            "CN",
            segment_prefix="1701",
            national_number=str(17012345678 + d),
        )
        for d in range(-1001, 1002)
    ]
    events: list[tuple[float, dict[str, str], PhoneFacts]] = [
        (START + h * 3600 + 1, {}, p) for h in range(HOURS - 3, HOURS) for p in numbers
    ]
    return _windows("run", budget, _seed(_horizon("run"), events))


KINDS: dict[str, Callable[[int], Costly]] = {
    "nodes": nodes,
    "firing": firing,
    "patterns": patterns,
    "distinct_exact": distinct_exact,
    "distinct_sketched": distinct_sketched,
    "runs": runs,
}
# The estimate's granularity: checkpoints are placed every CHECK_EVERY units.
assert CHECK_EVERY < DEFAULT_COST_BUDGET


def hostile(budget: int = DEFAULT_COST_BUDGET) -> str:
    """The most expensive stateless policy the budget allows: two patterns RE2 must work
    hard on over the longest user agent (a new one each request), then rules that all fire
    until the budget is spent."""
    head = "".join(
        f'rule p{i} {{\n    when event.attributes["ua"].matches(r"[ab]*a[ab]{{{10 + i}}}c")\n'
        "    then review\n}\n"
        for i in range(2)
    )

    def rule(i: int) -> str:
        return (
            f"rule r{i} {{\n    when phone.valid\n    then review\n    risk 2\n"
            f'    tags "t{i}"\n    reason "rule {i} fired for {{phone.masked}}"\n}}\n'
        )

    return _fill(rule, budget, head)
