"""One meaning of "the first event" on every path (docs/state.md §7): a server that has seen
nothing, `ringfence eval` without --agg and a rule test without aggregates all read the
same values, age() included (0 s, never 1 s)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import no_traceback, ringfence
from support import request, running_server

from server.api import decision_pb2 as pb

POLICY = """\
aggregate codes = count(per number, over 1h) where event.scene == "sms_code"
aggregate logins = count(per number, over 1h) where event.scene == "login"
aggregate apps = distinct(event.app_id, per number, over 1h)

rule brand_new {
    when age(per number) == 0s
    then review
    reason "codes {codes}, logins {logins}, apps {apps}"
}
"""
CASE = """\
[[case]]
name = "a number never seen"
phone = "+8613800138000"
event = { scene = "sms_code", app_id = "shop" }
[case.expect]
action = "review"
"""
EXPECTED = "codes 1, logins 0, apps 1"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    (root / "acme" / "tests").mkdir(parents=True)
    (root / "acme" / "policy.rf").write_text(POLICY)
    (root / "acme" / "tests" / "first.toml").write_text(CASE)
    return root


async def test_the_server_reads_a_first_event(rules: Path) -> None:
    async with running_server(rules) as s:
        event = pb.Event(scene="sms_code", app_id="shop")
        resp = await s.decisions.Evaluate(request("+8613800138000", "acme", event=event))
    assert [(m.rule, m.reason) for m in resp.matches] == [("brand_new", EXPECTED)]


def test_eval_assumes_the_same_first_event(rules: Path) -> None:
    out = ringfence(
        "eval", "--rules", str(rules), "--tenant", "acme", "--phone", "+8613800138000",
        "--scene", "sms_code", "--app-id", "shop",
    )  # fmt: skip
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    assert "age(per number) = 0s" in out.stdout
    assert f"review brand_new: {EXPECTED}" in out.stdout


def test_a_rule_test_computes_the_same_first_event(rules: Path) -> None:
    out = ringfence("test", str(rules), "-v")
    no_traceback(out)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 0 failed" in out.stdout
