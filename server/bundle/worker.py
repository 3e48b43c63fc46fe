"""Compiling policies in worker processes, each with a time and a memory budget.

A policy is untrusted input, and parsing, checking and compiling it costs time and memory
that a few hostile lines can inflate (up to the limits in :class:`dsl.CompileOptions`,
which bound cost but not to "cheap"). So neither the event loop nor the server process
ever does that work: a small pool of long-lived worker processes does, and hands back a
:class:`dsl.PolicyArtifact` (plain data) or diagnostics; the server only runs
:func:`dsl.load_policy` on the artifact.

Each worker is started by ``forkserver`` (never a fork of the server with its gRPC
threads), with ``RLIMIT_AS`` as its memory budget, a per-job ``RLIMIT_CPU`` as a backstop,
a lower CPU priority than the server and the highest OOM score, so under pressure the
kernel takes a worker, never the server. The time budget is the job's CPU time, which the
parent watches; past it (or past a wall-clock backstop several times longer, for a worker
that gets no CPU at all) the worker is killed and a fresh one is started on the next job.
Each worker has a pipe of its own, so a kill only ever affects the job it was running
(libraries whose workers share one pipe behind a lock can wedge the pool when a worker is
killed holding it).

Two kinds of callers: tenant builds (``build``: reloads, the CLI) and ``ValidatePolicy``
(``check_async``). Builds go first when both wait for a worker, and asynchronous checks
are admitted only while fewer than ``workers + queue`` are in flight; past that they are
refused (:class:`PoolBusy`), so a burst of hostile requests queues a few and turns the
rest away instead of piling up compiles.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import MappingProxyType
from typing import Any, Literal

from dsl import (
    CompileOptions,
    Diagnostic,
    PolicyArtifact,
    PolicyError,
    Severity,
    build_policy,
    check_policy,
)
from server.bundle.budget import CompileBudget

log = logging.getLogger("ringfence.compile")

_NO_LIBRARY: Mapping[str, str] = MappingProxyType({})
_DEFAULT_OPTIONS = CompileOptions()


@dataclass(slots=True)
class CompileStats:
    """Counters for metrics; bumped under the pool's lock."""

    jobs: int = 0
    timeouts: int = 0
    out_of_memory: int = 0
    crashes: int = 0
    refused: int = 0
    workers_started: int = 0


class PoolBusy(Exception):
    """Too many checks are already running or waiting; the caller should retry later."""


class PoolClosed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Job:
    kind: Literal["build", "check"]
    sources: dict[str, str]
    library: dict[str, str]
    tenant: str
    options: CompileOptions
    cpu_s: int


# -- the worker process -----------------------------------------------------------------------


def _limit_self(memory_mb: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    with contextlib.suppress(OSError):
        os.nice(10)
    # Idle priority where the kernel has it: a compile only gets CPU that requests leave
    # free, so a hostile policy cannot take a core from Evaluate (nice alone still shares).
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    # Raising one's own OOM score needs no privilege: under memory pressure the kernel
    # then kills a worker (the job fails with a diagnostic), not the server.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _set_cpu_budget(seconds: int) -> None:
    """SIGXCPU (which ends the process) once this job has used ``seconds`` more CPU."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _run_job(job: _Job) -> tuple[str, Any]:
    out_of_memory = False
    try:
        if job.kind == "build":
            return "ok", build_policy(
                job.sources, library=job.library, tenant=job.tenant, options=job.options
            )
        return "ok", check_policy(
            job.sources, library=job.library, tenant=job.tenant, options=job.options
        )
    except PolicyError as err:
        return "policy", err.diagnostics
    except MemoryError:
        # Answered outside the handler: by then the traceback, and the frames holding
        # what filled the memory, are gone.
        out_of_memory = True
    except Exception as err:  # a compiler bug: report it, keep the worker's protocol intact
        return "error", f"{type(err).__name__}: {err}"[:500]
    assert out_of_memory
    return "memory", None


def _child_main(conn: Connection, memory_mb: int) -> None:
    _limit_self(memory_mb)
    # Ready only once imports are done: a job's time budget is for compiling, not for
    # starting Python (which takes seconds on a loaded machine).
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the server closed the pipe or went away
        _set_cpu_budget(job.cpu_s)
        conn.send(_run_job(job))


# -- the pool (server side) ---------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Worker:
    proc: BaseProcess
    conn: Connection
    jobs: int = 0


@dataclass(eq=False)
class CompilePool:
    """Thread-safe: ``build`` and ``check`` block the calling thread (never call them on
    the event loop); ``check_async`` is for the event loop."""

    budget: CompileBudget = field(default_factory=CompileBudget)
    start_method: str = "forkserver"
    # A worker is replaced after this many jobs, so nothing a job left behind (a fragmented
    # heap after a big policy) stays for long.
    max_jobs_per_worker: int = 200
    stats: CompileStats = field(init=False, default_factory=CompileStats)

    def __post_init__(self) -> None:
        self._ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # Workers fork from a server process that already imported the compiler (and
            # built its parser): a replacement is ready in milliseconds.
            self._ctx.set_forkserver_preload([__name__])
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self._urgent = 0  # builds waiting for a worker: checks let them go first
        self._admitted = 0  # check_async calls running or waiting
        self._closed = False
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.budget.workers, thread_name_prefix="policy-check"
        )

    # -- public -------------------------------------------------------------------------

    def build(
        self,
        sources: Mapping[str, str],
        *,
        library: Mapping[str, str] = _NO_LIBRARY,
        tenant: str = "",
        options: CompileOptions = _DEFAULT_OPTIONS,
    ) -> PolicyArtifact:
        """:func:`dsl.build_policy` in a worker; raises PolicyError, including when the
        budget ran out (a diagnostic says which)."""
        status, value = self._run(self._job("build", sources, library, tenant, options), True)
        if status == "ok":
            assert isinstance(value, PolicyArtifact)
            return value
        if status == "policy":
            raise PolicyError(value)
        raise PolicyError([self._failure(status, value, sources)])

    def check(
        self,
        sources: Mapping[str, str],
        *,
        library: Mapping[str, str] = _NO_LIBRARY,
        tenant: str = "",
        options: CompileOptions = _DEFAULT_OPTIONS,
    ) -> tuple[Diagnostic, ...]:
        """:func:`dsl.check_policy` in a worker; a budget that ran out is one diagnostic."""
        status, value = self._run(self._job("check", sources, library, tenant, options), False)
        if status == "ok":
            return tuple(value)
        if status == "policy":
            return tuple(value)
        return (self._failure(status, value, sources),)

    async def check_async(
        self,
        sources: Mapping[str, str],
        *,
        library: Mapping[str, str] = _NO_LIBRARY,
        tenant: str = "",
        options: CompileOptions = _DEFAULT_OPTIONS,
    ) -> tuple[Diagnostic, ...]:
        """``check`` for the event loop; raises PoolBusy when too many are in flight."""
        with self._cond:
            if self._closed:
                raise PoolClosed("the policy compiler is shut down")
            if self._admitted >= self.budget.workers + self.budget.queue:
                self.stats.refused += 1
                raise PoolBusy(
                    f"{self._admitted} policy checks are already running or queued; "
                    "try again shortly"
                )
            self._admitted += 1
        try:
            fut = self._executor.submit(
                self.check, sources, library=library, tenant=tenant, options=options
            )
        except RuntimeError:
            self._unadmit(None)
            raise PoolClosed("the policy compiler is shut down") from None
        # Released when the work ends, not when the caller stops waiting: a cancelled
        # call's compile still holds its worker until it finishes or is killed.
        fut.add_done_callback(self._unadmit)
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        """Kill every worker; jobs in flight end with a diagnostic."""
        with self._cond:
            self._closed = True
            workers = list(self._all)
            self._idle.clear()
            self._cond.notify_all()
        for w in workers:
            self._kill(w)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals ----------------------------------------------------------------------

    def _job(
        self,
        kind: Literal["build", "check"],
        sources: Mapping[str, str],
        library: Mapping[str, str],
        tenant: str,
        options: CompileOptions,
    ) -> _Job:
        cpu_s = math.ceil(self.budget.timeout_s) + 1
        return _Job(kind, dict(sources), dict(library), tenant, options, cpu_s)

    def _unadmit(self, _fut: object) -> None:
        with self._cond:
            self._admitted -= 1

    def _run(self, job: _Job, urgent: bool) -> tuple[str, Any]:
        worker = self._acquire(urgent)
        status, value = "crash", ""
        try:
            try:
                worker.conn.send(job)
                status = self._wait(worker)
                if status == "done":
                    status, value = worker.conn.recv()
            except (EOFError, OSError):
                # The worker died: SIGXCPU is the CPU backstop, SIGKILL the OOM killer.
                worker.proc.join(1.0)
                code = worker.proc.exitcode
                if code == -signal.SIGXCPU:
                    status = "timeout"
                elif code == -signal.SIGKILL and not self._closed:
                    status = "memory"
                else:
                    status, value = "crash", _exit_text(code)
            return status, value
        finally:
            with self._cond:
                self.stats.jobs += 1
                if status in ("timeout", "starved"):
                    self.stats.timeouts += 1
                elif status == "memory":
                    self.stats.out_of_memory += 1
                elif status == "crash":
                    self.stats.crashes += 1
            worker.jobs += 1
            healthy = status in ("ok", "policy") and worker.jobs < self.max_jobs_per_worker
            self._release(worker, healthy)

    def _wait(self, worker: _Worker) -> str:
        """Wait for the answer: "done", "timeout" once the job has used its budget of CPU
        time, or "starved" when it got too little CPU to finish within the wall-clock
        backstop. The budget is CPU time, not time waited: workers run at idle priority,
        and on a busy machine a cheap policy may wait long for a core without costing
        anything, so waiting must not read as an expensive policy."""
        budget = self.budget.timeout_s
        pid = worker.proc.pid
        start = _cpu_seconds(pid)
        if start is None:  # no /proc: the wall clock is all there is
            return "done" if worker.conn.poll(budget) else "timeout"
        step = min(0.1, budget / 4)
        deadline = time.monotonic() + max(_STARVED_MIN_S, _STARVED_FACTOR * budget)
        while not worker.conn.poll(step):
            used = _cpu_seconds(pid)
            if used is None:  # /proc stopped answering: fall back to the wall clock
                return "done" if worker.conn.poll(budget) else "timeout"
            if used - start > budget:
                return "timeout"
            if time.monotonic() > deadline:
                return "starved"
        return "done"

    def _acquire(self, urgent: bool) -> _Worker:
        with self._cond:
            if urgent:
                self._urgent += 1
            try:
                while True:
                    if self._closed:
                        raise PoolClosed("the policy compiler is shut down")
                    if urgent or not self._urgent:
                        if self._idle:
                            return self._idle.pop()
                        if len(self._all) + self._starting < self.budget.workers:
                            self._starting += 1
                            break
                    self._cond.wait()
            finally:
                if urgent:
                    self._urgent -= 1
                    self._cond.notify_all()
        try:
            worker = self._start()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting -= 1
            self._all.add(worker)
            self.stats.workers_started += 1
        return worker

    def _start(self) -> _Worker:
        try:
            return self._start_with(self._ctx)
        except OSError as exc:
            if self.start_method != "forkserver":
                raise
            # The fork server listens on a socket in a temporary folder; a container with
            # no writable /tmp has none. Spawn needs no file: slower to start, as safe.
            log.warning(
                "cannot start the compiler fork server; spawning compiler processes instead",
                extra={"error": str(exc)},
            )
            self.start_method = "spawn"
            self._ctx = multiprocessing.get_context("spawn")
            return self._start_with(self._ctx)

    def _start_with(self, ctx: Any) -> _Worker:
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=_child_main,
            args=(child, self.budget.memory_mb),
            name="ringfence-policy-compiler",
            daemon=True,
        )
        proc.start()
        child.close()
        worker = _Worker(proc, parent)
        try:
            ready = parent.poll(_START_TIMEOUT_S) and parent.recv() == ("ready", None)
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._kill(worker)
            raise OSError("a policy compiler process did not start")
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._cond:
            if healthy and not self._closed:
                self._idle.append(worker)
                self._cond.notify_all()
                return
            self._all.discard(worker)
            self._cond.notify_all()
        self._kill(worker)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        with contextlib.suppress(Exception):
            worker.proc.kill()
        with contextlib.suppress(Exception):
            worker.proc.join(5.0)
        with contextlib.suppress(Exception):
            worker.conn.close()

    def _failure(self, status: str, value: object, sources: Mapping[str, str]) -> Diagnostic:
        where = next(iter(sorted(sources)), "<policy>")
        budget = self.budget
        if status == "timeout":
            message = f"policy check exceeded its time budget of {_seconds(budget.timeout_s)} s"
        elif status == "starved":
            wall = max(_STARVED_MIN_S, _STARVED_FACTOR * budget.timeout_s)
            message = (
                f"policy check did not finish in {_seconds(wall)} s: the compiler got too "
                "little CPU (the machine is busy), not more than its budget"
            )
        elif status == "memory":
            message = f"policy check exceeded its memory budget of {budget.memory_mb} MB"
        elif status == "error":
            message = f"internal error while compiling the policy: {value}"
        else:
            message = f"policy check failed: the compiler process {value}"
        log.warning("policy compile failed", extra={"path": where, "reason": message})
        return Diagnostic(where, 1, 1, Severity.ERROR, message)


# How long a new compiler process may take to start (imports), apart from any job budget.
_START_TIMEOUT_S = 60.0
# How long a job may wait in all, however little CPU it used: the larger of these.
_STARVED_MIN_S = 120.0
_STARVED_FACTOR = 6
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU time of a process, from /proc; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (IndexError, ValueError):
        return None


def _seconds(value: float) -> str:
    return f"{value:g}"


def _exit_text(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was ended by {signal.Signals(-code).name}"
        return f"was ended by signal {-code}"
    return f"exited with status {code}"
