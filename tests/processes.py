"""Starting and stopping the real servers tests run against (redis-server, nginx)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

START_TIMEOUT_S = 10.0


def start(
    args: Sequence[str],
    *,
    what: str,
    ready: Callable[[], bool],
    readiness: str,
    log: Path,
    error: type[Exception],
    output_to_log: bool = False,
) -> subprocess.Popen[bytes]:
    """The process, once ``ready()`` says so. If it exits first, ``error`` carries the
    tail of its stderr (or of ``log``); if it is not ready in time it is stopped and
    ``error`` says it did not ``readiness``. ``output_to_log``: the process logs to its
    stdout and stderr, which go to ``log`` (a pipe nobody reads would fill and stall it)."""
    if output_to_log:
        with log.open("ab") as out:
            process = subprocess.Popen(list(args), stdout=out, stderr=out)
    else:
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


class _Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Stoppable)


@contextlib.contextmanager
def running(start: Callable[[], S], unavailable: type[Exception]) -> Iterator[S]:
    """The server ``start()`` returns, stopped on exit. One that cannot start (not installed,
    would not listen) fails the test with the reason: these servers are part of the suite,
    so their absence is a failure, never a skip."""
    try:
        server = start()
    except unavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
