"""``--watch-poll-ms``: the rules directory is polled instead of watched with inotify, which
never hears of writes made by other NFS clients; edits still go live."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest
from support import request, running_server

from server.api import decision_pb2 as pb

POLICY = """\
rule invalid_numbers {{
  when not phone.valid
  then {action}
  reason "r"
}}
"""


def inotify_fds() -> int:
    """Open inotify instances of this process (each watcher in inotify mode holds one)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    return count


def write(root: Path, action: str) -> None:
    tmp = root / "acme" / ".policy.tmp"
    tmp.write_text(POLICY.format(action=action))
    os.replace(tmp, root / "acme" / "policy.rf")


@pytest.mark.parametrize(("poll_ms", "inotify"), [(100, False), (0, True)])
async def test_edits_go_live_polled_or_watched(tmp_path: Path, poll_ms: int, inotify: bool) -> None:
    root = tmp_path / "rules"
    (root / "acme").mkdir(parents=True)
    write(root, "review")
    before = inotify_fds()
    async with running_server(root, watch=True, watch_poll_ms=poll_ms, reload_debounce_ms=50) as s:
        resp = await s.decisions.Evaluate(request("+86 123", tenant="acme"), timeout=5)
        assert resp.action == pb.ACTION_REVIEW
        write(root, "block")
        async with asyncio.timeout(15):
            while True:
                resp = await s.decisions.Evaluate(request("+86 123", tenant="acme"), timeout=5)
                if resp.action == pb.ACTION_BLOCK:
                    break
                await asyncio.sleep(0.05)
        # Polling mode holds no inotify instance; the default mode does.
        assert (inotify_fds() > before) is inotify
