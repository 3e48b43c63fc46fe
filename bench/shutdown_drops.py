"""Calls that fail while pods shut down under load: five shutdowns (SIGTERM, then a fresh
process on the same port) of three ``ringfence serve`` processes, with the client reaching
them directly (pick_first over the addresses), through an nginx layer-4 balancer (a
ClusterIP Service) and with round_robin, using the service config of docs/api.md. Each mode
is run as shipped (the drain) and, as the baseline in the same run, with ``--drain-timeout
0`` (gRPC core's own shutdown, as the server stopped before).

    .venv/bin/python bench/shutdown_drops.py [--modes direct proxy round_robin]

The harness is tests/server/test_shutdown_under_load.py's, so the bench and the test
measure the same thing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.common import machine  # noqa: E402


def harness() -> Any:
    path = REPO / "tests" / "server" / "test_shutdown_under_load.py"
    spec = importlib.util.spec_from_file_location("shutdown_harness", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", nargs="+", default=["direct", "proxy", "round_robin"])
    ns = ap.parse_args()
    h = harness()
    print(f"# failed calls over {h.SHUTDOWNS} shutdowns under load ({machine()})")
    for mode in ns.modes:
        for label, extra in (("drain (default)", ()), ("no drain", ("--drain-timeout", "0"))):
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                rules = work / "rules"
                shutil.copytree(REPO / "rules", rules)
                running, busy = asyncio.run(h.run_shutdowns(work, rules, mode, extra))
            failed = sum(running.failed.values())
            codes = ", ".join(f"{n} {c.split(':')[0]}" for c, n in running.failed.items())
            print(
                f"{mode:12} {label:16}: {running.ok:>7,} ok, {failed:>3} failed"
                f"{f' ({codes})' if codes else ''}; connections at each drain: {busy}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
