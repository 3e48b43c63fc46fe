"""What a tenant author or an admin caller writes is echoed back in bounded size.

A diagnostic quotes the author's text; a failed reload's diagnostics become
GetPolicyStatus.last_error and a log line; rule names become metric labels; a
ValidatePolicy path is repeated in every diagnostic. Each of these once grew with its
input: a 1000-character pattern echoed in full, 200 long diagnostics in every status
reply, a tenant's thousands of rule names as label values.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import grpc
import pytest
from support import Running, request, running_server

from dsl import CompileOptions, check_policy
from server.api import decision_pb2 as pb
from server.api import policy_pb2 as ppb
from server.bundle.load import MAX_ERROR_TEXT
from server.observability.telemetry import OTHER_RULES, RULE_LABELS
from server.rpc.policy_service import LISTED_ERROR


def _rule(name: str, when: str) -> str:
    return f"rule {name} {{\n    when {when}\n    then review\n}}\n"


def test_a_bad_pattern_is_not_quoted_in_full() -> None:
    pattern = "(" + "a" * 990
    diags = check_policy({"t/p.rf": _rule("r", f'event.app_id.matches(r"{pattern}")')}, tenant="t")
    (error,) = [d for d in diags if d.is_error]
    assert error.message.startswith("invalid regular expression: missing )")
    assert len(error.message) <= 160


def test_a_pattern_longer_than_the_limit_is_refused() -> None:
    diags = check_policy(
        {"t/p.rf": _rule("r", f'event.app_id.matches(r"{"a" * 1001}")')}, tenant="t"
    )
    assert [d.message for d in diags if d.is_error] == [
        "a pattern holds at most 1000 characters, not 1001"
    ]


def test_the_number_of_patterns_is_bounded() -> None:
    limit = CompileOptions().max_patterns
    rules = "".join(_rule(f"r{i}", f'event.app_id.matches(r"^app{i}$")') for i in range(limit + 1))
    # Without a cost budget: 257 patterns over app ids cost more than the default allows.
    unbudgeted = CompileOptions(cost_budget=0)
    errors = [
        d for d in check_policy({"t/p.rf": rules}, tenant="t", options=unbudgeted) if d.is_error
    ]
    assert [(e.line, e.message) for e in errors] == [
        (
            limit * 4 + 2,
            f"a policy uses at most {limit} different patterns"
            " (each is compiled when the policy loads)",
        )
    ]
    # The same pattern again is no new pattern.
    same = "".join(_rule(f"r{i}", 'event.app_id.matches(r"^app$")') for i in range(limit + 1))
    assert not [
        d for d in check_policy({"t/p.rf": same}, tenant="t", options=unbudgeted) if d.is_error
    ]


@pytest.mark.parametrize(
    "source",
    [
        f'import "{"a" * 3000}.rf"\n',
        f'settings {{\n    default_action = "{"c" * 3000}"\n}}\n',
    ],
    ids=["import-path", "default-action"],
)
def test_every_message_is_cut_to_the_limit(source: str) -> None:
    limit = CompileOptions().max_message_chars
    (error,) = [d for d in check_policy({"t/p.rf": source}, tenant="t") if d.is_error]
    assert len(error.message) == limit
    assert error.message.endswith("...")


def _many_errors() -> str:
    # 300 undefined names of ~240 characters: every diagnostic quotes its own.
    return "".join(_rule(f"r{i}", f"undefined_{i}_{'x' * 230} > 1") for i in range(300))


async def test_status_reports_a_huge_failure_within_bounds(rules_copy: Path) -> None:
    async with running_server(rules_copy) as s:
        before = await s.decisions.Evaluate(request("+8613800138000"), timeout=5)
        (rules_copy / "demo" / "broken.rf").write_text(_many_errors(), encoding="utf-8")
        await s.server.reload()
        one = await s.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(tenant="demo"), timeout=5)
        listing = await s.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(), timeout=5)
        after = await s.decisions.Evaluate(request("+8613800138000"), timeout=5)
    error = one.tenants[0].last_error
    assert error.startswith("demo/broken.rf:")
    assert len(error) <= MAX_ERROR_TEXT + 40
    assert re.search(r"\.\.\. and \d+ more$", error)
    (listed,) = [t for t in listing.tenants if t.tenant == "demo"]
    assert len(listed.last_error) <= LISTED_ERROR + 80
    assert listed.last_error.endswith("(GetPolicyStatus tenant='demo' has all of it)")
    # The last good policy still answers.
    assert after.policy_version == before.policy_version


@pytest.mark.parametrize(
    "path",
    ["x" * 300 + ".rf", "/etc/passwd.rf", "demo/../../x.rf", "demo/policy.txt", "demo/a\nb.rf"],
    ids=["long", "absolute", "dot-dot", "not-rf", "newline"],
)
async def test_validate_policy_refuses_a_strange_path(demo: Running, path: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await demo.policies.ValidatePolicy(
            ppb.ValidatePolicyRequest(tenant="demo", path=path, source="rule r {}\n"), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "path" in (caught.value.details() or "")


async def test_validate_policy_keeps_a_plain_path(demo: Running) -> None:
    resp = await demo.policies.ValidatePolicy(
        ppb.ValidatePolicyRequest(tenant="demo", path="demo/sub/new_rules.rf", source="oops\n"),
        timeout=10,
    )
    assert not resp.ok
    assert resp.diagnostics[0].path == "demo/sub/new_rules.rf"


HITS = re.compile(r'^ringfence_rule_hits_total\{[^}]*rule="(?P<rule>[^"]*)"[^}]*\} \S+$', re.M)


async def test_a_tenant_with_many_rules_fills_a_bounded_number_of_series(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules"
    (rules / "many").mkdir(parents=True)
    count = RULE_LABELS + 50
    # 250 rules that all fire cost more than the default evaluation budget: the tenant
    # chooses a larger one.
    (rules / "many" / "tenant.toml").write_text("[limits]\ncost_budget = 2000000\n")
    (rules / "many" / "policy.rf").write_text(
        "".join(_rule(f"rule_{i}", 'event.scene == "login"') for i in range(count)),
        encoding="utf-8",
    )
    async with running_server(rules, metrics_listen="127.0.0.1:0") as s:
        resp = await s.decisions.Evaluate(
            request("+8613800138000", tenant="many", event={"scene": "login"}), timeout=5
        )
        url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    assert resp.action == pb.ACTION_REVIEW
    assert len(resp.matches) == count
    labels = HITS.findall(body.decode())
    assert len(labels) == RULE_LABELS + 1
    assert OTHER_RULES in labels
