"""Running checks for the language server: debounced, one at a time, in a worker process
with a time budget, newest version wins.

Each tenant (or library file checked alone) has a key. ``request(key)`` restarts that key's
debounce timer; when it fires, the newest sources are read and checked quickly (only the
rules that changed, when the worker can do that exactly; see :mod:`server.lsp.worker`),
and once the key has been quiet for ``settle_s`` a full check follows. A result that
arrives after a newer request for the same key is dropped (superseded). A check still
running when its key is requested again is killed if it has already run for longer than
``kill_superseded_after`` (a slow file should not hold the newer version back); a check
that exceeds ``budget`` seconds is killed and reported. Killing means ending the worker
process (started by us, ended by its pid); the next check starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from server.lsp.worker import (
    HEADER_SIZE,
    READY,
    CheckReply,
    CheckRequest,
    decode_frame,
    encode_frame,
)

log = logging.getLogger("ringfence.lsp")


class CheckTimeout(Exception):
    pass


@dataclass
class _Job:
    key: str
    generation: int
    started: float


# Starting Python and importing the checker: seconds on a busy machine, never a minute.
START_TIMEOUT_S = 60.0


class Worker:
    """One checking process, started on first use and after every kill."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.proc: asyncio.subprocess.Process | None = None
        # The warm-up at initialisation and the first check may both ask for the process:
        # one starts it, the other waits until it is ready.
        self._starting = asyncio.Lock()

    async def start(self) -> asyncio.subprocess.Process:
        """The process, started and ready: a busy machine may take seconds to start
        Python and import the checker, which no check's budget should pay for."""
        async with self._starting:
            if self.proc is None or self.proc.returncode is not None:
                await self._spawn()
            assert self.proc is not None
            return self.proc

    async def _spawn(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.lsp.worker",
            str(self.memory_mb),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        assert proc.stdout is not None
        try:
            ready = await asyncio.wait_for(proc.stdout.readexactly(1), START_TIMEOUT_S)
            if ready != READY:  # pragma: no cover - our own worker
                raise ConnectionError("the checking process said something else first")
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
            raise
        self.proc = proc

    async def check(self, req: CheckRequest) -> CheckReply:
        proc = await self.start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(encode_frame(req))
        await proc.stdin.drain()
        head = await proc.stdout.readexactly(HEADER_SIZE)
        body = await proc.stdout.readexactly(int.from_bytes(head, "big"))
        reply = decode_frame(body)
        if not isinstance(reply, CheckReply):  # pragma: no cover - our own worker
            raise RuntimeError("the checking process answered something else")
        return reply

    async def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()  # our own child, by its pid
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


Publish = Callable[[str, CheckRequest, CheckReply | None, str], Awaitable[None]]
Prepare = Callable[[str], Awaitable[CheckRequest | None]]


class CheckRunner:
    def __init__(
        self,
        prepare: Prepare,
        publish: Publish,
        *,
        debounce_s: float = 0.05,
        budget_s: float = 10.0,
        kill_superseded_after: float = 3.0,
        settle_s: float = 2.0,
        memory_mb: int = 2048,
    ) -> None:
        self.prepare = prepare
        self.publish = publish
        self.debounce_s = debounce_s
        self.budget_s = budget_s
        self.kill_superseded_after = kill_superseded_after
        self.settle_s = settle_s
        self.worker = Worker(memory_mb)
        self.generation: dict[str, int] = {}
        self.timers: dict[str, asyncio.Task[None]] = {}
        self.running: _Job | None = None
        self.lock = asyncio.Lock()
        self.checks_run = 0
        self.superseded = 0

    def request(self, key: str, *, now: bool = False, full: bool = False) -> None:
        gen = self.generation.get(key, 0) + 1
        self.generation[key] = gen
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        job = self.running
        if (
            job is not None
            and job.key == key
            and time.monotonic() - job.started > self.kill_superseded_after
        ):
            asyncio.get_running_loop().create_task(self.worker.kill())
        self.timers[key] = asyncio.get_running_loop().create_task(
            self._after_debounce(key, gen, 0.0 if now else self.debounce_s, quick=not full)
        )

    async def _after_debounce(self, key: str, gen: int, delay: float, quick: bool = True) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            return
        self.timers.pop(key, None)
        async with self.lock:
            if self.generation.get(key) != gen:
                self.superseded += 1
                return
            reply: CheckReply | None = None
            try:
                req = await self.prepare(key)
            except Exception as exc:  # a reader bug must not end this key's checks
                log.exception("reading the files of a check failed")
                req = CheckRequest("", {}, {}, key=key)
                failure = f"the files could not be read ({exc.__class__.__name__})"
            else:
                if req is None:
                    return
                req = replace(req, key=key, quick=quick)
                checked = await self._check(key, gen, req)
                if checked is None:
                    return
                reply, failure = checked
            self.checks_run += 1
            if self.generation.get(key) != gen:
                self.superseded += 1
                return
        try:
            await self.publish(key, req, reply, failure)
        except Exception:  # a publisher bug (a list reader, say) must not end checking
            log.exception("publishing a check failed")
        if reply is not None and reply.quick and self.generation.get(key) == gen:
            # The quick check reused the last full one for what did not change; confirm it
            # all once the edits pause.
            self.timers[key] = asyncio.get_running_loop().create_task(
                self._after_debounce(key, gen, self.settle_s, quick=False)
            )

    async def _check(
        self, key: str, gen: int, req: CheckRequest
    ) -> tuple[CheckReply | None, str] | None:
        """The worker's reply and the failure to show; None when a newer version of the
        key killed the check."""
        try:
            await self.worker.start()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            await self.worker.kill()
            return None, f"the checking process did not start ({exc.__class__.__name__})"
        self.running = _Job(key, gen, time.monotonic())
        try:
            reply = await asyncio.wait_for(self.worker.check(req), self.budget_s)
            return reply, reply.failure
        except TimeoutError:
            await self.worker.kill()
            return None, f"checking took longer than {self.budget_s:g} s and was stopped"
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            await self.worker.kill()
            if self.generation.get(key) != gen:  # killed because a newer version came
                self.superseded += 1
                return None
            return None, f"the checking process stopped ({exc.__class__.__name__})"
        finally:
            self.running = None

    async def close(self) -> None:
        for t in self.timers.values():
            t.cancel()
        await self.worker.kill()
