"""An exception in one rule is that rule's on_error, end to end (issue 11, item 9).

The language no longer has a way to make a rule raise (integers are 64-bit, and reasons
format only such numbers), so these tests stand for the failures that remain possible:
a value no one foresaw reaching a rule from outside the policy. Over gRPC it is a state
backend answering with a number far outside int64 (a corrupted or foreign entry in a
shared store, a backend bug): formatting it into a reason raises, exactly the path of
the 4,300-digit integer in the issue, which lost the whole decision (UNKNOWN on unary,
INTERNAL on batch and stream). In the language alone it is a list whose label lookup
raises. In both, the decision is still made, the rule's on_error decides, the
explanation says "error", and ``ringfence_rule_errors_total`` counts it by rule.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from support import RULES, request, running_server

from dsl import compile_policy
from dsl.aggregates import AggregateRef
from dsl.decision import Action, Decision, RuleTrace
from dsl.facts import EventFacts, Facts, PhoneFacts
from server.api import decision_pb2 as pb
from server.bundle.load import load_bundle
from server.outcome import Outcome
from server.phone import PhoneParser
from server.rpc.decide import to_response
from server.state import StateBackend, open_backend

POLICY = """\
aggregate hits = count(per number, over 1h)

rule many_hits {
  when hits > 3
  then block
  reason "{hits} hits this hour"
  on_error review
}

rule invalid {
  when not phone.valid
  then review
  tags "invalid"
  reason "invalid number"
}
"""
HUGE = 10**5000  # str() of it raises: Python limits int -> str conversion to 4,300 digits


class ForeignValues:
    """The real memory backend, except that ``hits`` reads as a number no counter makes."""

    def __init__(self) -> None:
        self.inner: StateBackend = open_backend("memory://", hash_key=b"k" * 32)
        self.stats = self.inner.stats

    async def apply(
        self,
        tenant: str,
        refs: Sequence[AggregateRef],
        now: float,
        *,
        record: bool,
        received: float | None = None,
    ) -> dict[str, int]:
        values = await self.inner.apply(tenant, refs, now, record=record, received=received)
        return {k: (HUGE if k == "hits" else v) for k, v in values.items()}

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def _check(resp: pb.EvaluateResponse) -> None:
    assert resp.action == pb.ACTION_REVIEW  # on_error review
    by_rule = {m.rule: m for m in resp.matches}
    assert by_rule["many_hits"].reason == "many_hits: evaluation failed"
    assert by_rule["invalid"].reason == "invalid number"  # the other rule still decided
    assert list(resp.tags) == ["invalid"]


def _rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    (rules / "acme").mkdir(parents=True)
    (rules / "acme" / "policy.rf").write_text(POLICY)
    return rules


async def test_a_rule_that_raises_is_its_on_error_over_grpc(tmp_path: Path) -> None:
    req = request("+86 123", tenant="acme")
    async with running_server(
        _rules(tmp_path), backend=ForeignValues(), metrics_listen="127.0.0.1:0"
    ) as s:
        _check(await s.decisions.Evaluate(req, timeout=5))
        batch = await s.decisions.EvaluateBatch(pb.EvaluateBatchRequest(requests=[req]), timeout=5)
        assert not batch.results[0].HasField("error")
        _check(batch.results[0].response)
        stream = s.decisions.EvaluateStream(timeout=5)
        await stream.write(req)
        await stream.done_writing()
        answers = [r async for r in stream]
        assert len(answers) == 1
        assert not answers[0].HasField("error")
        _check(answers[0])
        url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    counts = {
        tuple(sorted(re.findall(r'(tenant|rule)="([^"]*)"', labels))): value
        for labels, value in re.findall(
            r"^ringfence_rule_errors_total\{([^}]*)\} (\S+)$", body.decode(), re.M
        )
    }
    assert counts == {(("rule", "many_hits"), ("tenant", "acme")): "3.0"}


async def test_the_explanation_says_error_over_grpc(tmp_path: Path) -> None:
    req = request("+86 123", tenant="acme", explain=True)
    async with running_server(_rules(tmp_path), backend=ForeignValues()) as s:
        resp = await s.decisions.Evaluate(req, timeout=5)
    _check(resp)
    lines = {e.rule: e for e in resp.explanation}
    assert lines["many_hits"].value == "error"
    assert "evaluation failed: on_error review" in lines["many_hits"].detail


def test_the_explanation_line_of_a_failed_rule_says_error() -> None:
    """The wire form of a trace line whose rule raised (what the test above will see)."""
    bundle = load_bundle(RULES, "demo", PhoneParser())
    decision = Decision(
        Action.REVIEW,
        0,
        (),
        (),
        trace=(
            RuleTrace("broken", None, True, "x=1; evaluation failed: on_error review", True),
            RuleTrace("fine", True, True, ""),
            RuleTrace("unsure", None, False, ""),
        ),
        failed_rules=("broken",),
    )
    facts = Facts("demo", PhoneFacts("+8613800138000", True), EventFacts())
    outcome = Outcome(bundle, facts, decision, {}, False, "r", False, 0.0)
    resp = to_response(outcome, explain=True)
    assert [(e.rule, e.value) for e in resp.explanation] == [
        ("broken", "error"),
        ("fine", "true"),
        ("unsure", "unknown"),
    ]


class RaisingLabels:
    """A list whose membership works and whose label lookup fails."""

    def __contains__(self, e164: object) -> bool:
        return True

    def labels(self, e164: str) -> Mapping[str, str] | None:
        raise RuntimeError("label store unavailable")

    def __len__(self) -> int:
        return 1


def test_a_raising_list_lookup_is_the_rules_on_error() -> None:
    policy = compile_policy(
        {
            "t/p.rf": 'list vendor from "lists/v.csv"\n'
            'rule risky {\n  when phone in vendor and vendor.label("risk") == "risk2"\n'
            "  then block\n  on_error review\n}\n"
            'rule skipped {\n  when vendor.label("risk") == "x"\n  then block\n}\n'
            'rule plain {\n  when phone.valid\n  then allow\n  tags "valid"\n}\n'
        },
        tenant="t",
    )
    facts = Facts("t", PhoneFacts("+8613800138000", True), EventFacts(occurred_at=0.0))
    lists = {"vendor": RaisingLabels()}
    for explain in (False, True):
        d = policy.evaluate(facts, {}, lists, explain=explain)
        assert d.action == Action.REVIEW
        assert d.failed_rules == ("risky", "skipped")
        assert [m.rule for m in d.matches] == ["risky", "plain"]
        assert d.tags == ("valid",)
        if explain:
            assert [t.error for t in d.trace] == [True, True, False]
