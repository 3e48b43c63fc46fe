"""Evaluate throughput and latency against a bare grpc.aio echo server, same client, same run.

    .venv/bin/python bench/echo_ratio.py [--seconds 3] [--rounds 3]

Both servers run as child processes; the client sends pre-serialised requests (a mix of
numbers, some on the privacy list, some in runs) at 1 and 16 concurrent calls, alternating
between the servers each round. Targets (issue 3/8): throughput >= 0.8x echo at 16
concurrent calls, p99 <= 1.3x echo.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    BIN,
    REPO,
    LoadResult,
    best,
    child,
    cpu_seconds,
    interleave,
    load,
    machine,
    pid_listening,
    ringfence_server,
    rules_copy,
)
from server.api import decision_pb2 as pb

METHOD = "/ringfence.v1.DecisionService/Evaluate"


def requests(n: int = 2000, seed: int = 7) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = rnd.random()
        if kind < 0.1:
            phone = f"+86170000000{rnd.randrange(20):02d}"
        elif kind < 0.2:
            phone = f"+8616512340{i % 100:03d}"
        else:
            phone = f"+861{rnd.choice('3589')}{rnd.randrange(10**9):09d}"
        out.append(
            pb.EvaluateRequest(
                tenant="demo",
                phone_number=phone,
                event=pb.Event(
                    scene=rnd.choice(["register", "login", "sms_code"]),
                    app_id=rnd.choice(["shop", "ride", "pay"]),
                    ip="203.0.113.7",
                ),
            ).SerializeToString()
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="*", default=[1, 16])
    ns = ap.parse_args()
    reqs = requests()
    print(f"# Evaluate vs bare echo ({machine()})")
    with (
        rules_copy() as rules,
        ringfence_server(rules) as rf_port,
        child([str(BIN / "python"), str(REPO / "bench" / "echo_server.py")]) as echo_port,
    ):
        pids = {echo_port: pid_listening(echo_port), rf_port: pid_listening(rf_port)}
        # Server CPU per call: the machine is shared, so throughput swings with whatever
        # else runs; the CPU a server spends per call does not.
        cpu: dict[int, list[float]] = {echo_port: [], rf_port: []}
        for conc in ns.concurrency:

            def run(port: int, c: int = conc):  # type: ignore[no-untyped-def]
                def once() -> LoadResult:
                    before = cpu_seconds(pids[port])
                    r = asyncio.run(
                        load(
                            f"127.0.0.1:{port}", METHOD, reqs, concurrency=c, duration_s=ns.seconds
                        )
                    )
                    # Warm-up calls are not counted in r.calls but cost CPU: scale by time.
                    spent = cpu_seconds(pids[port]) - before
                    cpu[port].append(spent * ns.seconds / (ns.seconds + 0.5) / max(1, r.calls))
                    return r

                return once

            cpu[echo_port].clear()
            cpu[rf_port].clear()
            echo_runs, rf_runs = interleave(ns.rounds, run(echo_port), run(rf_port))
            echo, rf = best(echo_runs), best(rf_runs)
            echo_cpu = sorted(cpu[echo_port])[len(cpu[echo_port]) // 2] * 1e6
            rf_cpu = sorted(cpu[rf_port])[len(cpu[rf_port]) // 2] * 1e6
            print(
                f"concurrency {conc:>2}: echo {echo.rps:8.0f} rps p50 {echo.p50_ms:.2f} ms "
                f"p99 {echo.p99_ms:.2f} ms | evaluate {rf.rps:8.0f} rps p50 "
                f"{rf.p50_ms:.2f} ms p99 {rf.p99_ms:.2f} ms | throughput "
                f"{rf.rps / echo.rps:.2f}x, p99 {rf.p99_ms / echo.p99_ms:.2f}x"
                f"{'' if not rf.errors else f' ERRORS {rf.errors}'}"
            )
            print(
                f"                server CPU per call: echo {echo_cpu:.0f} µs, evaluate "
                f"{rf_cpu:.0f} µs = {echo_cpu / rf_cpu:.2f}x echo's throughput if CPU-bound"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
