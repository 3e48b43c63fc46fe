"""``ringfence lsp``: the language server for editors, over stdio."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default)")
    p.add_argument("--rules", default="", help="the rules root (default: found from each file)")
    p.add_argument(
        "--check-timeout", type=float, default=10.0, help="seconds one check may take (10)"
    )
    p.add_argument("--debounce-ms", type=int, default=50, help="wait after an edit (50)")
    p.add_argument("--memory-mb", type=int, default=2048, help="checker memory cap (2048)")


def run_lsp(ns: argparse.Namespace) -> int:
    from server.config import ConfigError, evaluation_budget_from_env
    from server.lsp.server import LspOptions, serve_stdio

    try:
        costs = evaluation_budget_from_env()
    except ConfigError as exc:
        raise SystemExit(f"ringfence lsp: {exc}") from None
    serve_stdio(
        LspOptions(
            debounce_s=ns.debounce_ms / 1000,
            budget_s=ns.check_timeout,
            memory_mb=ns.memory_mb,
            rules_root=ns.rules,
            costs=costs,
        )
    )
    return 0
