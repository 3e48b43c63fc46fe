"""Attacks 1 and 2 of the sandbox issue end to end: through ValidatePolicy, and as files
dropped into a live server's rules folder and hot-reloaded. The payloads are inert text."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Running, request

from server.api import decision_pb2 as pb
from server.api import policy_pb2 as ppb


def _payload(canary: Path) -> str:
    return f"x\\n__import__('os').system('touch {canary}')\\n#"


async def test_validate_policy_treats_the_payload_as_text(demo: Running, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    source = (
        f'aggregate d = distinct(event.attributes["{_payload(canary)}"], per number, over 1h)\n'
        "rule r {\n when d > 1\n then review\n}\n"
    )
    resp = await demo.policies.ValidatePolicy(
        ppb.ValidatePolicyRequest(tenant="demo", path="demo/x.rf", source=source), timeout=10
    )
    assert resp.ok
    assert not canary.exists()


async def test_a_hostile_file_name_is_only_a_name(
    demo: Running, rules_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file name cannot hold '/', so the payload touches a file in the working directory.
    monkeypatch.chdir(tmp_path)
    canary = tmp_path / "CANARY"
    name = "x\n    __import__('os').system('touch CANARY')\n    #.rf"
    (rules_copy / "demo" / name).write_text(
        'rule hostile_name {\n when event.scene == "probe"\n then review\n}\n', encoding="utf-8"
    )
    await demo.server.reload()
    status = await demo.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(tenant="demo"))
    assert status.tenants[0].last_error == ""
    req = request("+8613800138000", event=pb.Event(scene="probe"))
    resp = await demo.decisions.Evaluate(req, timeout=5)
    assert [m.rule for m in resp.matches] == ["hostile_name"]
    assert resp.action == pb.ACTION_REVIEW
    assert not canary.exists()
