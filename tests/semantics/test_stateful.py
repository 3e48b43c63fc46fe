"""The model against a live server across restarts, reloads and policy edits, with two
tenants' traffic interleaved (docs/state.md §9): a hypothesis state machine per backend."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from semantics import paths
from semantics.events import POOL, TENANTS, floods, gaps, starts, streams
from semantics.model import Event, Model
from semantics.paths import Live, examples, install, mismatches, report
from semantics.policies import Generated, edits, policies


class Traffic(RuleBasedStateMachine):
    """Each tenant has its own policy; the model follows every step the server takes."""

    def __init__(self, live: Live, keeps_state: bool) -> None:
        super().__init__()
        self.live = live
        self.keeps_state = keeps_state
        self.model = Model()
        self.gens: dict[str, Generated] = {}
        self.prefix = ""
        self.now = 0.0
        self.steps = 0
        self.busy: Event | None = None  # the last flood's number and event
        self.history: list[str] = []  # what happened, for a failure message

    @initialize(a=policies(max_aggregates=3), b=policies(max_aggregates=3), start=starts)
    def install(self, a: Generated, b: Generated, start: float) -> None:
        self.gens = {"a": a, "b": b}
        self.prefix = install(self.live.server, self.live.ws, self.files())
        for tenant in TENANTS:
            self.model.load(tenant, self.gens[tenant].model(tenant))
        self.now = start

    def files(self) -> dict[str, dict[str, str]]:
        return {t: self.gens[t].files(t) for t in TENANTS}

    @rule(data=st.data())
    def traffic(self, data: st.DataObject) -> None:
        """A burst of both tenants' events; every value checked as it is answered."""
        self.steps += 1
        ids = f"s{self.steps}-"
        events = data.draw(streams(max_events=6, start=self.now, ids=ids, flood=False))
        self.check(events, f"{len(events)} events")

    def check(self, events: tuple[Event, ...], what: str) -> None:
        self.now = events[-1].received_at
        want = [self.model.decide(ev) for ev in events]
        got = paths.unary(self.live.server, events, self.prefix)
        self.history.append(what)
        meaning = {t: self.gens[t].meaning() for t in TENANTS}
        found = mismatches(events, want, got, meaning)
        texts = "\n".join(f"--- {t} ---\n{g.text()}" for t, g in self.gens.items())
        steps = "; ".join(self.history)
        assert not found, report(f"after {steps}", found, texts)

    @rule(data=st.data())
    def flood(self, data: st.DataObject) -> None:
        """One number busy for a while (more buckets than a window holds)."""
        events = data.draw(floods(self.now, POOL))
        self.busy = events[-1]
        self.check(events, f"{len(events)} events of one number")

    @precondition(lambda self: self.busy is not None)
    @rule(gap=st.sampled_from([1.0, 30.0, 600.0]))
    def busy_again(self, gap: float) -> None:
        """The busy number comes back (after a restart, the history its offset windows
        read must still be there)."""
        assert self.busy is not None
        at = max(self.now, self.busy.received_at) + gap
        events = tuple(replace(self.busy, received_at=at + i) for i in range(2))
        self.check(events, "the busy number again")

    @rule(gap=gaps)
    def wait(self, gap: float) -> None:
        self.now += gap
        self.history.append(f"wait {gap:g}s")

    @rule()
    def restart(self) -> None:
        self.live.restart()
        self.model.restart(keeps_state=self.keeps_state)
        self.history.append("restart")

    @precondition(lambda self: bool(self.gens))
    @rule(data=st.data(), tenant=st.sampled_from(TENANTS))
    def edit(self, data: st.DataObject, tenant: str) -> None:
        self.steps += 1
        what, gen = data.draw(edits(self.gens[tenant], f"n{self.steps}"))
        self.gens[tenant] = gen
        self.live.ws.write(self.prefix + tenant, gen.files(tenant))
        self.live.server.reload([self.prefix + t for t in TENANTS])
        self.model.load(tenant, gen.model(tenant))
        self.history.append(f"edit {tenant}: {what}")


SETTINGS = examples(6, stateful_step_count=12)


def machine(live: Live, keeps_state: bool) -> type[RuleBasedStateMachine]:
    """A factory in the place of the class (hypothesis only calls it)."""
    return cast(type[RuleBasedStateMachine], lambda: Traffic(live, keeps_state))


def test_memory_restarts_reloads_and_edits(memory: Live) -> None:
    run_state_machine_as_test(
        machine(memory, keeps_state=False),
        settings=SETTINGS,
    )


@pytest.mark.redis
def test_redis_restarts_reloads_and_edits(redis: Live) -> None:
    run_state_machine_as_test(
        machine(redis, keeps_state=True),
        settings=SETTINGS,
    )
