"""Starting and stopping the real servers tests run against (redis-server, nginx)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

START_TIMEOUT_S = 10.0


def start(
    args: Sequence[str],
    *,
    what: str,
    ready: Callable[[], bool],
    readiness: str,
    log: Path,
    error: type[Exception],
) -> subprocess.Popen[bytes]:
    """The process, once ``ready()`` says so. If it exits first, ``error`` carries the
    tail of its stderr (or of ``log``); if it is not ready in time it is stopped and
    ``error`` says it did not ``readiness``."""
    process = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            detail = err or (log.read_text() if log.exists() else "")
            raise error(f"{what} exited at start: {detail.strip()[-800:]}")
        if ready():
            return process
        time.sleep(0.02)
    stop(process)
    raise error(f"{what} did not {readiness} within {START_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not ended within 5 s."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
