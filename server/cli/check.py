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

    root = Path(ns.rules)
    if not root.is_dir():
        print(f"ringfence check: not a directory: {root}", file=sys.stderr)
        return 2
    reg = registry(root)
    names = tenants(reg, ns.tenant)
    failed = 0
    library = read_library(root)
    for name in names:
        # Warnings come from the checker; errors (including lists and tenant.toml) from a
        # full bundle build, exactly as the server would do it.
        sources = read_sources(root, root / name)
        for d in check_policy(sources, library=library, tenant=name):
            if d.severity == Severity.WARNING:
                print(render(d, {**library, **sources}.get(d.path, "")))
        outcome = reg.load_sync([name])[0]
        if outcome.ok:
            bundle = reg.get(name)
            assert bundle is not None
            print(
                f"ok   {name}: {bundle.rule_count} rules, {len(bundle.lists)} lists, "
                f"version {bundle.version}"
            )
        else:
            failed += 1
            print(outcome.error)
            print(f"FAIL {name}")
    if not names:
        print(f"ringfence check: no tenant folders in {root}", file=sys.stderr)
        return 1
    return 1 if failed else 0
