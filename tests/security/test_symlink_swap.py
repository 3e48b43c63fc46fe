"""A rules directory that is a symlink swapped for another is followed (issue 11, item 8).

Deploy tools switch releases by swapping one symlink (`ln -s release-2 rules.new && mv -T
rules.new rules`), as a Kubernetes ConfigMap does with its ``..data`` link one level
down. The watcher used to watch the old target, which never changes again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from support import Running, request, running_server

from server.api import decision_pb2 as pb

POLICY = 'rule invalid {{\n  when not phone.valid\n  then {action}\n  reason "{reason}"\n}}\n'


def release(root: Path, action: str, reason: str) -> Path:
    (root / "acme").mkdir(parents=True)
    (root / "acme" / "policy.rf").write_text(POLICY.format(action=action, reason=reason))
    return root


async def live(s: Running, action: int, reason: str) -> None:
    """Wait (bounded) until the server answers with this action and reason."""
    async with asyncio.timeout(15):
        while True:
            r = await s.decisions.Evaluate(request("+86 123", tenant="acme"), timeout=5)
            if r.action == action and r.matches and r.matches[0].reason == reason:
                return
            await asyncio.sleep(0.05)


async def test_a_swapped_rules_symlink_is_followed(tmp_path: Path) -> None:
    first = release(tmp_path / "release-1", "review", "release 1")
    second = release(tmp_path / "release-2", "block", "release 2")
    rules = tmp_path / "rules"
    rules.symlink_to(first)
    async with running_server(rules, watch=True, reload_debounce_ms=50) as s:
        await live(s, pb.ACTION_REVIEW, "release 1")
        (tmp_path / "rules.new").symlink_to(second)
        mv = await asyncio.create_subprocess_exec(
            "mv", "-T", str(tmp_path / "rules.new"), str(rules)
        )
        assert await mv.wait() == 0
        await live(s, pb.ACTION_BLOCK, "release 2")
        # And the new target is the one watched now: an edit there goes live too.
        (second / "acme" / "policy.rf").write_text(
            POLICY.format(action="review", reason="release 2, edited")
        )
        await live(s, pb.ACTION_REVIEW, "release 2, edited")
    # The old release was never touched: nothing under the old watch ever changed.
    assert "release 1" in (first / "acme" / "policy.rf").read_text()
