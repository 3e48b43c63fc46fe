"""``ringfence check``: compile every tenant's policy and lists, as the server would."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.cli.common import registry, tenants


def run_check(ns: argparse.Namespace) -> int:
    from dsl.diagnostics import render
    from server.bundle.load import read_library, read_sources

    root = Path(ns.rules)
    if not root.is_dir():
        print(f"ringfence check: not a directory: {root}", file=sys.stderr)
        return 2
    reg = registry(root)
    names = tenants(reg, ns.tenant)
    failed = 0
    for name in names:
        # A full bundle build, exactly as the server does it: files read inside the
        # tenant's walls, compiled in a worker with the server's budget, lists loaded.
        outcome = reg.load_sync([name])[0]
        if outcome.ok:
            bundle = reg.get(name)
            assert bundle is not None
            if bundle.policy.warnings:
                texts = {**read_library(root)[0], **read_sources(root, name)[0]}
                for d in bundle.policy.warnings:
                    print(render(d, texts.get(d.path, "")))
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
