"""Ringfence policy language: grammar, checker, compiler. Pure: no I/O, no asyncio."""

from dsl.compiler import (
    CheckReport,
    build_policy,
    check_policy,
    check_policy_report,
    compile_policy,
    generated_python,
    load_policy,
)
from dsl.diagnostics import Diagnostic, PolicyError, Severity, render, render_all
from dsl.options import CompileOptions
from dsl.policy import CompiledPolicy, ListDecl, PolicyArtifact, RuleInfo

__all__ = [
    "CheckReport",
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
    "check_policy_report",
    "compile_policy",
    "generated_python",
    "load_policy",
    "render",
    "render_all",
]
