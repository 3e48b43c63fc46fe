"""``ringfence check``: compile every tenant's policy and lists, as the server would."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.cli.common import registry, tenants


def run_check(ns: argparse.Namespace) -> int:
    from dsl.diagnostics import render
    from server.bundle.load import read_library, read_sources
    from server.cli import output

    root = Path(ns.rules)
    if not root.is_dir():
        print(f"ringfence check: not a directory: {root}", file=sys.stderr)
        return 2
    reg = registry(root)
    names = tenants(reg, ns.tenant)
    if not names:
        print(f"ringfence check: no tenant folders in {root}", file=sys.stderr)
        return 1
    messages: list[str] = []
    rows: list[tuple[str, bool, str, str, str, str]] = []
    with output.progress(len(names), "check") as step:
        for name in names:
            # A full bundle build, exactly as the server does it: files read inside the
            # tenant's walls, compiled in a worker with the server's budget, lists loaded.
            outcome = reg.load_sync([name])[0]
            bundle = reg.get(name) if outcome.ok else None
            if bundle is not None:
                if bundle.policy.warnings:
                    texts = {**read_library(root)[0], **read_sources(root, name)[0]}
                    messages.extend(
                        render(d, texts.get(d.path, "")) for d in bundle.policy.warnings
                    )
                budget = reg.costs.for_tenant(bundle.config.cost_budget) or 0
                # The cost model's estimate of one request, against the tenant's budget.
                cost = f"{bundle.policy.cost:,}/{budget:,}"
                rows.append(
                    (
                        name,
                        True,
                        str(bundle.rule_count),
                        str(len(bundle.lists)),
                        cost,
                        bundle.version,
                    )
                )
            else:
                messages.append(str(outcome.error))
                rows.append((name, False, "-", "-", "-", "-"))
            if step is not None:
                step(1)
    out = output.console()
    for message in messages:
        output.line(out, message)
    t = output.table(
        out,
        "tenant",
        "status",
        "rules",
        "lists",
        "cost/budget",
        "version",
        right=("rules", "lists", "cost/budget"),
    )
    for name, ok, rules, lists, cost, version in rows:
        t.add_row(
            *output.cells(name), output.status(out, ok), *output.cells(rules, lists, cost, version)
        )
    output.emit(out, t)
    return 0 if all(ok for _, ok, *_ in rows) else 1
