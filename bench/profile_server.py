"""Where a Ringfence server's time goes under load: py-spy samples the server process while
the echo benchmark's client drives it, and the samples are summed by part of the request.

    .venv/bin/pip install py-spy          # a profiling tool, not a dependency
    .venv/bin/python bench/profile_server.py [--seconds 8] [--concurrency 16] [-- serve args]

Samples only the thread holding the GIL (``--gil``): the server's throughput is bound by
that one Python thread, so its samples say where a call's time goes. Prints the share of
samples by part (inclusive: a part's callees count in it) and the hottest functions by own
time. gRPC's Cython code has no Python frames of its own: its time shows as the asyncio
callback that runs it. The figures in docs/benchmarks.md were made with this.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BIN, REPO, child, load, machine, pid_listening, rules_copy
from bench.echo_ratio import METHOD, requests

# (label, substring of a frame "function (file:line)"): a sample goes to the first row of
# this table with a frame anywhere in its stack, so the more specific parts come first.
PARTS: tuple[tuple[str, str], ...] = (
    ("OpenTelemetry SDK + OTLP export", "/opentelemetry/"),
    ("state apply", "/server/state/"),
    ("phone facts", "/server/phone/"),
    ("compiled policy (plan, evaluate)", "<ringfence policy"),
    ("dsl runtime", "/dsl/"),
    ("validation", "/server/rpc/validation.py"),
    ("response building", "to_response"),
    ("telemetry + decision log", "/server/observability/"),
    ("request path (decide.py)", "/server/rpc/decide.py"),
    ("servicer", "/server/rpc/decision_service.py"),
    ("grpc (Python parts; Cython shows as the loop)", "/grpc/"),
    ("event loop + gRPC's Cython callbacks", "/asyncio/"),
)


def summarise(raw: str, top: int = 25) -> None:
    parts: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1].replace(str(REPO) + "/", "").split("site-packages/")[-1]] += n
        for label, needle in PARTS:
            if any(needle in f for f in frames):
                parts[label] += n
                break
        else:
            parts["other"] += n
    print(f"{total} samples")
    print("share by part (first match from the table, inclusive):")
    for label, n in parts.most_common():
        print(f"  {label:<30} {100 * n / total:5.1f} %")
    print(f"hottest functions (own time), top {top}:")
    for frame, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {frame[:150]}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--native", action="store_true", help="sample C and Cython frames too")
    ap.add_argument(
        "--trace-all",
        action="store_true",
        help="trace every request, exported over OTLP to a local sink (bench/otlp_sink.py)",
    )
    ap.add_argument("serve_args", nargs="*")
    ns = ap.parse_args()
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    print(f"# profile of Evaluate at {ns.concurrency} concurrent ({machine()})")
    with contextlib.ExitStack() as stack:
        rules = stack.enter_context(rules_copy())
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        out = Path(tmp) / "raw.txt"
        env: dict[str, str] = {}
        if ns.trace_all:
            sink = stack.enter_context(
                child([str(BIN / "python"), str(REPO / "bench/otlp_sink.py")])
            )
            env = {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink}",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            }
        serve = [str(BIN / "ringfence"), "serve", "--rules", str(rules), "--listen", "127.0.0.1:0"]
        with child([*serve, *ns.serve_args], env=env) as port:
            # The server's pid: the process listening on the port.
            pid = pid_listening(port)
            reqs = requests()
            asyncio.run(
                load(f"127.0.0.1:{port}", METHOD, reqs, concurrency=ns.concurrency, duration_s=1)
            )
            spy_proc = subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                 "--full-filenames", "--gil",
                 "--duration", str(int(ns.seconds)), "--output", str(out),
                 *(["--native"] if ns.native else ["--nonblocking"])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            done = threading.Event()
            result = []

            def drive() -> None:
                result.append(
                    asyncio.run(
                        load(
                            f"127.0.0.1:{port}",
                            METHOD,
                            reqs,
                            concurrency=ns.concurrency,
                            duration_s=ns.seconds,
                        )
                    )
                )
                done.set()

            threading.Thread(target=drive, daemon=True).start()
            spy_proc.wait()
            done.wait()
        r = result[0]
        print(f"load: {r.rps:,.0f} rps p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms")
        summarise(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
