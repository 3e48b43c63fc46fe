"""What tracing costs: Evaluate throughput with OpenTelemetry tracing exporting over OTLP to
a local sink, against the same server with tracing off, same client, same run.

    .venv/bin/python bench/tracing_cost.py [--seconds 3] [--rounds 3]

Target (issue 6/8): tracing costs <= 15 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BIN, REPO, best, child, interleave, load, machine, rules_copy
from bench.echo_ratio import METHOD, requests


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    reqs = requests()
    print(f"# tracing on vs off ({machine()})")
    with rules_copy() as rules, contextlib.ExitStack() as stack:
        sink = stack.enter_context(child([str(BIN / "python"), str(REPO / "bench/otlp_sink.py")]))
        serve = [str(BIN / "ringfence"), "serve", "--rules", str(rules), "--listen", "127.0.0.1:0"]
        off = stack.enter_context(child(serve, env={"OTEL_TRACES_EXPORTER": "none"}))
        otlp = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }
        on = stack.enter_context(
            child(serve, env={**otlp, "OTEL_TRACES_SAMPLER": "parentbased_always_on"})
        )
        # The server's default sampler when tracing is on: 10 % of new traces.
        sampled = stack.enter_context(child(serve, env=otlp))

        def run(port: int):  # type: ignore[no-untyped-def]
            return lambda: asyncio.run(
                load(f"127.0.0.1:{port}", METHOD, reqs, concurrency=16, duration_s=ns.seconds)
            )

        runs = interleave(ns.rounds, run(off), run(on), run(sampled))
        a, b, c = (best(r) for r in runs)
        for label, r in (("tracing off", a), ("every request traced", b), ("10 % sampled", c)):
            print(
                f"{label:<22}: {r.rps:8,.0f} rps p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms"
                f"  cost {100 * (1 - r.rps / a.rps):5.1f} %"
            )
        print("target: tracing costs <= 15 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
