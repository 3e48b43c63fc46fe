"""``ringfence replay``: replay recorded events through a policy (backtest)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from server.cli.common import registry

if TYPE_CHECKING:
    from server.bundle.load import TenantBundle


def run_replay(ns: argparse.Namespace) -> int:
    import json

    from server.tools.replay import first_tenant, format_table, replay_file

    reg = registry(Path(ns.rules))
    tenant = first_tenant(Path(ns.events), ns.tenant or "")
    if not tenant:
        print("ringfence replay: no events for the tenant", file=sys.stderr)
        return 1

    def load(rules: Path) -> TenantBundle:
        r = registry(rules)
        outcome = r.load_sync([tenant])[0]
        if not outcome.ok:
            print(outcome.error, file=sys.stderr)
            raise SystemExit(1)
        bundle = r.get(tenant)
        assert bundle is not None
        return bundle

    base = load(Path(ns.rules))
    other = load(Path(ns.against)) if ns.against else None
    # Parsing (in a worker process) and deciding overlap; bad lines are reported after.
    errors: list[str] = []
    summary, other_summary, diff = replay_file(
        Path(ns.events),
        reg.parser,
        base,
        other,
        errors=errors,
        progress=not ns.json and sys.stderr.isatty(),
    )
    for e in errors[:20]:
        print(e, file=sys.stderr)
    if errors:
        print(f"ringfence replay: {len(errors)} bad line(s) skipped", file=sys.stderr)
    if not summary.events:
        print("ringfence replay: no events for the tenant", file=sys.stderr)
        return 1
    if ns.json:
        out = {"tenant": tenant, "policy": summary.to_json(), "skipped_lines": len(errors)}
        if other_summary is not None:
            out["against"] = other_summary.to_json()
            out["diff"] = {
                "changed": diff.total,
                "transitions": {f"{a}->{b}": n for (a, b), n in sorted(diff.transitions.items())},
                "samples": diff.samples,
            }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    for line in format_table(summary, f"{ns.rules} ({base.version})"):
        print(line)
    if other_summary is not None:
        print()
        assert other is not None
        for line in format_table(other_summary, f"{ns.against} ({other.version})"):
            print(line)
        print()
        print(f"decisions that differ: {diff.total} of {summary.events}")
        for (a, b), n in sorted(diff.transitions.items()):
            print(f"  {a:>6} -> {b:<6} {n}")
        for s in diff.samples:
            print(
                f"  e.g. {s['event']} ({s['scene']}): {s['before']['action']} "
                f"{s['before']['rules']} -> {s['after']['action']} {s['after']['rules']}"
            )
    return 0
