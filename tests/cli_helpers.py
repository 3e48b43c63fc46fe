"""Running the ``ringfence`` command as a user does, for the CLI tests (tests/server/cli)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import RINGFENCE

GOLDEN = Path(__file__).resolve().parent / "server" / "cli" / "golden"


def ringfence(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RINGFENCE), *args], capture_output=True, text=True, timeout=60, check=False
    )


def no_traceback(out: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
