"""One decision, whoever asks: facts -> plan -> values -> evaluation -> decision.

``Evaluate`` and its batch and stream forms (``server.rpc.decide``), ``ringfence replay``,
``ringfence eval`` and rule tests all decide through :class:`Step`; they differ only in
where the values come from: a state backend awaited over the network, a memory state
applied in line, or values an analyst wrote down. Written sans-I/O (the way protocol
libraries separate the state machine from the socket), so this module stays pure: the
server awaits its backend between :meth:`Step.values_for` and :meth:`Step.finish`, and the
offline tools call :func:`decide_now` with an in-process state.

What the values mean is docs/state.md's "What every value means"; what the combination of
rules means is docs/dsl.md's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from dsl.aggregates import RefLike
from dsl.decision import Decision
from dsl.facts import Facts
from dsl.lists import ListView
from dsl.policy import CompiledPolicy

# Why values are unknown, as a rule fired by its on_error says it (docs/dsl.md).
STATE_UNAVAILABLE = "state unavailable"


class SyncState(Protocol):
    """A state that answers in line (the memory backend): what offline paths decide with."""

    def apply_now(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        *,
        record: bool,
        received: float | None = None,
    ) -> dict[str, int | None]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """One decision and what it was made from."""

    facts: Facts
    refs: Sequence[RefLike]
    values: Mapping[str, int | None]
    decision: Decision


class Step:
    """One decision in progress: planned when made, decided by :meth:`finish`."""

    __slots__ = ("facts", "lists", "policy", "refs")

    def __init__(
        self,
        policy: CompiledPolicy,
        lists: Mapping[str, ListView],
        facts: Facts,
        refs: Sequence[RefLike] | None = None,
    ) -> None:
        """``refs``: the policy's plan for these facts when it was made elsewhere (a replay
        plans in worker processes)."""
        self.policy = policy
        self.lists = lists
        self.facts = facts
        self.refs = policy.plan(facts, lists) if refs is None else refs

    def finish(
        self,
        values: Mapping[str, int | None],
        *,
        explain: bool = False,
        facts: Facts | None = None,
        unknown_because: str = "",
        deadline: float = 0.0,
    ) -> Decided:
        """Decide with ``values`` (an id missing or None is unknown). ``facts`` replaces the
        planned facts (a retry decides with its first attempt's event time);
        ``unknown_because`` is why values are unknown, when the caller knows (the state
        failed), for the reasons of rules fired by their on_error. Past ``deadline``
        (``dsl.runtime.work_time()`` seconds; 0: none) the evaluation stops between rules with
        :class:`dsl.runtime.EvaluationDeadline`."""
        used = self.facts if facts is None else facts
        decision = self.policy.evaluate(
            used,
            values,
            self.lists,
            explain=explain,
            unknown_because=unknown_because,
            deadline=deadline,
        )
        return Decided(facts=used, refs=self.refs, values=values, decision=decision)

    def decided_refs(self, decided: Decided) -> Sequence[RefLike]:
        """What recording ``decided`` feeds: the refs of the aggregates over past decisions
        whose filter it passes (docs/state.md §11), recorded after it is made, with one
        more call to the state; empty for a policy with no such aggregate."""
        if not self.policy.records_decisions:
            return ()
        action = decided.decision.action.name.lower()
        return self.policy.plan_decided(decided.facts, self.lists, action)


def decide_now(
    policy: CompiledPolicy,
    lists: Mapping[str, ListView],
    facts: Facts,
    state: SyncState,
    *,
    record: bool,
    received: float | None = None,
    given: Mapping[str, int | None] | None = None,
    explain: bool = False,
    refs: Sequence[RefLike] | None = None,
) -> Decided:
    """Decide one event against an in-process ``state`` (recording it, and then the
    decision into the aggregates over past decisions, when ``record``).
    ``given`` values win over the state's (``ringfence eval --agg``, a rule test's
    ``aggregates``); ``refs`` is the plan when it was made elsewhere."""
    step = Step(policy, lists, facts, refs)
    values: dict[str, int | None] = {}
    if step.refs:
        values.update(
            state.apply_now(
                facts.tenant,
                step.refs,
                facts.event.occurred_at,
                record=record,
                received=received,
            )
        )
    if given:
        values.update(given)
    decided = step.finish(values, explain=explain)
    if record:
        after = step.decided_refs(decided)
        if after:
            state.apply_now(
                facts.tenant, after, facts.event.occurred_at, record=True, received=received
            )
    return decided
