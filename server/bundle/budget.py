"""What compiling one policy may cost: the budget of the compiler worker processes.

A module of its own (no compiler imports) so ``server.config`` can name it without loading
the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.host import usable_cpus

# dsl.options.DEFAULT_COST_BUDGET and DEFAULT_COST_CEILING, without importing the compiler
# (tests/server/bundle/test_tenant_config.py holds the two together).
DEFAULT_COST_BUDGET = 1_000_000
DEFAULT_COST_CEILING = 10_000_000


def default_workers() -> int:
    """Half the CPUs this process may use, one at least and two at most: compiles and
    checks must never take every core from the event loop that answers Evaluate. Measured
    on two cores (docs/benchmarks.md): two workers busy with hostile policies put the quiet
    tenant's p99 at 3.5-4.4x its steady value, one worker at 1.7-1.9x. Two at most because
    each worker may grow to ``memory_mb`` and a pod without a CPU limit sees the whole
    node's cores; more workers is an explicit choice (``--compile-workers``)."""
    return max(1, min(2, usable_cpus() // 2))


@dataclass(frozen=True, slots=True)
class CompileBudget:
    """What one compile may cost, and how many may run or wait at once."""

    timeout_s: float = 20.0  # CPU seconds per job; the worker is killed past it
    memory_mb: int = 512  # address space of each worker process (RLIMIT_AS)
    workers: int = field(default_factory=default_workers)  # worker processes
    # ValidatePolicy calls that may wait for a worker (each holds its source, <= 1 MiB);
    # more are refused. Deep enough that a burst of callers waits its turn: a refused
    # caller retries, and every retry carries its whole source again.
    queue: int = 32


@dataclass(frozen=True, slots=True)
class EvaluationBudget:
    """What evaluating one request of a policy may cost, in the cost model's units
    (dsl/cost.py): the operator's default for every tenant and the ceiling a tenant may
    choose up to in its tenant.toml (``[limits] cost_budget``)."""

    default: int = DEFAULT_COST_BUDGET
    ceiling: int = DEFAULT_COST_CEILING

    def for_tenant(self, chosen: int) -> int | None:
        """The budget of a tenant that chose ``chosen`` (0: none): None past the ceiling."""
        if not chosen:
            return self.default
        return chosen if chosen <= self.ceiling else None
