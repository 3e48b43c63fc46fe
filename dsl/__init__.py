"""Ringfence policy language: grammar, checker, compiler. Pure: no I/O, no asyncio."""

from dsl.compiler import (
    build_policy,
    check_policy,
    compile_policy,
    generated_python,
    load_policy,
)
from dsl.diagnostics import Diagnostic, PolicyError, Severity, render, render_all
from dsl.options import CompileOptions
from dsl.policy import CompiledPolicy, ListDecl, PolicyArtifact, RuleInfo

__all__ = [
    "CompileOptions",
    "CompiledPolicy",
    "Diagnostic",
    "ListDecl",
    "PolicyArtifact",
    "PolicyError",
    "RuleInfo",
    "Severity",
    "build_policy",
    "check_policy",
    "compile_policy",
    "generated_python",
    "load_policy",
    "render",
    "render_all",
]
