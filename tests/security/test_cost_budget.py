"""Evaluation budgets: the operator's default and ceiling, a tenant's choice within them,
and every checker (``ringfence check``, ``ValidatePolicy``, the language server) refusing a
policy over its tenant's budget with the same message, at the most expensive part."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import request, running_server

from server.api import policy_pb2 as ppb
from server.bundle.budget import EvaluationBudget
from server.bundle.tenant_config import MAX_COST_BUDGET, TenantConfigError, parse_tenant_config
from server.config import ConfigError, add_serve_arguments, from_namespace

RINGFENCE = Path(sys.executable).parent / "ringfence"
# Three patterns RE2 may have to work hard on, each over the longest attribute: about
# 1.3 million units, over the default budget of one million.
COSTLY = "".join(  # also in tests/server/lsp/test_lsp_cost.py
    f'rule r{i} {{\n    when event.attributes["ua"].matches(r"[ab]*a[ab]{{{10 + i}}}c")\n'
    "    then review\n}\n"
    for i in range(3)
)


@pytest.mark.parametrize(
    "value",
    ["0", "-1", "1.5", "true", '"500000"', "inf", str(MAX_COST_BUDGET + 1), "1" + "0" * 400],
)
def test_a_tenants_budget_is_bounded(value: str) -> None:
    with pytest.raises(TenantConfigError) as err:
        parse_tenant_config(f"[limits]\ncost_budget = {value}\n", "t/tenant.toml")
    assert str(err.value).startswith("t/tenant.toml:2:15: error: [limits] cost_budget must be")


def test_a_tenants_budget_is_its_own_within_the_ceiling() -> None:
    costs = EvaluationBudget(default=1_000, ceiling=5_000)
    config = parse_tenant_config("[limits]\ncost_budget = 4000\n", "t/tenant.toml")
    assert costs.for_tenant(config.cost_budget) == 4_000
    assert costs.for_tenant(0) == 1_000
    assert costs.for_tenant(5_001) is None


def _serve_args(*extra: str) -> argparse.Namespace:
    # The server's own flags, as `ringfence serve` declares them.
    ap = argparse.ArgumentParser()
    add_serve_arguments(ap)
    return ap.parse_args(["--admin-token", "x", *extra])


def test_the_default_budget_must_be_one_a_tenant_could_choose() -> None:
    with pytest.raises(ConfigError, match="--cost-budget 20 is above --cost-ceiling 10"):
        from_namespace(_serve_args("--cost-budget", "20", "--cost-ceiling", "10"))
    cfg = from_namespace(_serve_args("--cost-budget", "20", "--cost-ceiling", "30"))
    assert cfg.evaluation_budget == EvaluationBudget(default=20, ceiling=30)


async def test_the_server_loads_a_tenant_within_its_budget_and_refuses_one_past_it(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules"
    for name, toml in (
        ("plain", ""),
        ("roomy", "[limits]\ncost_budget = 3000000\n"),
        ("greedy", "[limits]\ncost_budget = 20000000\n"),
    ):
        (rules / name).mkdir(parents=True)
        (rules / name / "policy.rf").write_text(COSTLY)
        (rules / name / "tenant.toml").write_text(toml)
    async with running_server(rules) as s:
        status = await s.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(), timeout=30)
        by_name = {t.tenant: t for t in status.tenants}
        # Over the default budget: the error is at the most expensive pattern.
        assert not by_name["plain"].version
        assert "plain/policy.rf:10:10: error: evaluating this policy may cost up to" in (
            by_name["plain"].last_error
        )
        # Its own budget, within the ceiling: it loads and answers.
        assert by_name["roomy"].version
        r = await s.decisions.Evaluate(request("+8613800138000", tenant="roomy"), timeout=30)
        assert r.policy_version == by_name["roomy"].version
        # Past the operator's ceiling: refused at the setting.
        assert not by_name["greedy"].version
        assert (
            "tenant.toml:2:15: error: [limits] cost_budget 20,000,000 is above the operator's"
            " ceiling of 10,000,000 (ringfence serve --cost-ceiling)"
        ) in by_name["greedy"].last_error


async def test_validate_policy_checks_against_the_tenants_budget(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "roomy").mkdir(parents=True)
    (rules / "roomy" / "policy.rf").write_text(
        "rule r {\n    when phone.valid\n    then review\n}\n"
    )
    (rules / "roomy" / "tenant.toml").write_text("[limits]\ncost_budget = 3000000\n")
    async with running_server(rules) as s:
        other = await s.policies.ValidatePolicy(
            ppb.ValidatePolicyRequest(tenant="other", source=COSTLY), timeout=60
        )
        roomy = await s.policies.ValidatePolicy(
            ppb.ValidatePolicyRequest(tenant="roomy", source=COSTLY), timeout=60
        )
    assert not other.ok
    (diag,) = other.diagnostics
    assert (diag.line, diag.column) == (10, 10)  # the largest program
    assert "over the tenant's budget of 1,000,000" in diag.message
    assert "matches() (512 characters x" in diag.message
    assert roomy.ok


def test_ringfence_check_shows_each_tenants_cost_and_refuses_past_the_budget(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules"
    (rules / "t").mkdir(parents=True)
    (rules / "t" / "policy.rf").write_text(COSTLY)
    env = {**os.environ, "RINGFENCE_COST_BUDGET": "5000000", "COLUMNS": "200"}
    ok = subprocess.run(
        [str(RINGFENCE), "check", str(rules)], capture_output=True, text=True, env=env, timeout=120
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "cost/budget" in ok.stdout
    assert "/5,000,000" in ok.stdout
    env["RINGFENCE_COST_BUDGET"] = "100000"
    refused = subprocess.run(
        [str(RINGFENCE), "check", str(rules)], capture_output=True, text=True, env=env, timeout=120
    )
    assert refused.returncode == 1
    assert "t/policy.rf:10:10: error: evaluating this policy may cost up to" in refused.stdout
