"""Who compiles a tenant's policy: the interface the bundle loader and PolicyService use.

The server and the ``ringfence`` command use :class:`server.bundle.worker.CompilePool`
(worker processes with a time and memory budget). :class:`InProcessCompiler` compiles in
the calling thread with no budget at all: only for code that compiles policies it trusts
(benchmarks, tests of the shipped rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from dsl import CompileOptions, Diagnostic, PolicyArtifact, build_policy, check_policy


class PolicyCompiler(Protocol):
    def build(
        self,
        sources: Mapping[str, str],
        *,
        library: Mapping[str, str],
        tenant: str,
        options: CompileOptions,
    ) -> PolicyArtifact:
        """Raises PolicyError (with a diagnostic when a budget ran out)."""
        ...

    def check(
        self,
        sources: Mapping[str, str],
        *,
        library: Mapping[str, str],
        tenant: str,
        options: CompileOptions,
    ) -> tuple[Diagnostic, ...]: ...


class InProcessCompiler:
    """No budget, no process: for trusted policies only (see the module docstring)."""

    def build(
        self,
        sources: Mapping[str, str],
        *,
        library: Mapping[str, str],
        tenant: str,
        options: CompileOptions,
    ) -> PolicyArtifact:
        return build_policy(sources, library=library, tenant=tenant, options=options)

    def check(
        self,
        sources: Mapping[str, str],
        *,
        library: Mapping[str, str],
        tenant: str,
        options: CompileOptions,
    ) -> tuple[Diagnostic, ...]:
        return check_policy(sources, library=library, tenant=tenant, options=options)
