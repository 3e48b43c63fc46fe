"""``ringfence check``: compile every tenant's policy and lists, as the server would."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.cli.common import registry, tenants


def run_check(ns: argparse.Namespace) -> int:
    from dsl import check_policy
    from dsl.diagnostics import Severity, render
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
    library = read_library(root)
    messages: list[str] = []
    rows: list[tuple[str, bool, str, str, str]] = []
    with output.progress(len(names), "check") as step:
        for name in names:
            # Warnings come from the checker; errors (including lists and tenant.toml) from
            # a full bundle build, exactly as the server would do it.
            sources = read_sources(root, root / name)
            for d in check_policy(sources, library=library, tenant=name):
                if d.severity == Severity.WARNING:
                    messages.append(render(d, {**library, **sources}.get(d.path, "")))
            outcome = reg.load_sync([name])[0]
            bundle = reg.get(name) if outcome.ok else None
            if bundle is not None:
                rows.append(
                    (name, True, str(bundle.rule_count), str(len(bundle.lists)), bundle.version)
                )
            else:
                messages.append(str(outcome.error))
                rows.append((name, False, "-", "-", "-"))
            if step is not None:
                step(1)
    out = output.console()
    for message in messages:
        output.line(out, message)
    t = output.table(out, "tenant", "status", "rules", "lists", "version", right=("rules", "lists"))
    for name, ok, rules, lists, version in rows:
        t.add_row(*output.cells(name), output.status(out, ok), *output.cells(rules, lists, version))
    output.emit(out, t)
    return 0 if all(ok for _, ok, *_ in rows) else 1
