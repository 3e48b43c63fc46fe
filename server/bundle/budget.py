"""What compiling one policy may cost: the budget of the compiler worker processes.

A module of its own (no imports) so ``server.config`` can name it without loading the
compiler.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CompileBudget:
    """What one compile may cost, and how many may run or wait at once."""

    timeout_s: float = 20.0  # CPU seconds per job; the worker is killed past it
    memory_mb: int = 512  # address space of each worker process (RLIMIT_AS)
    workers: int = 2  # worker processes
    queue: int = 8  # ValidatePolicy calls that may wait for a worker; more are refused
