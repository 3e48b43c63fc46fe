"""Ringfence policy language: grammar, checker, compiler. Pure: no I/O, no asyncio."""

from dsl.compiler import check_policy, compile_policy
from dsl.diagnostics import Diagnostic, PolicyError, Severity, render, render_all
from dsl.options import CompileOptions
from dsl.policy import CompiledPolicy, ListDecl, RuleInfo

__all__ = [
    "CompileOptions",
    "CompiledPolicy",
    "Diagnostic",
    "ListDecl",
    "PolicyError",
    "RuleInfo",
    "Severity",
    "check_policy",
    "compile_policy",
    "render",
    "render_all",
]
