"""What OpenTelemetry's Python SDK itself costs per traced call, against a call that does
nothing, in one process and one run: the floor under bench/tracing_cost.py.

    .venv/bin/python bench/tracing_floor.py [--calls 20000]

Each case runs the same loop: start a span as current, set the attributes our server span
gets, end it. Cases: no provider (the API's no-op), an SDK provider with no processor, with
a BatchSpanProcessor exporting over OTLP/gRPC to a local sink (the production set-up), and
with the three child spans the request path adds per traced request. The per-call cost is
then set against the CPU a Ringfence server spends per Evaluate (``--per-call-us``, from
bench/echo_ratio.py's "server CPU per call"), which is what tracing is a percentage of.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from bench.common import BIN, REPO, child, cpu_seconds, machine

ATTRS = {
    "rpc.system": "grpc",
    "rpc.service": "ringfence.v1.DecisionService",
    "rpc.method": "Evaluate",
}
DECIDED: dict[str, AttributeValue] = {
    "ringfence.tenant": "demo",
    "ringfence.action": "allow",
    "ringfence.policy_version": "0123456789abcdef",
    "ringfence.rules": ["privacy_number_low_volume"],
    "ringfence.phone_hash": "h:0123456789abcdef0123",
    "ringfence.degraded": False,
}


def one_span(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span(
        "/ringfence.v1.DecisionService/Evaluate", kind=SpanKind.SERVER, attributes=ATTRS
    ) as span:
        span.set_attributes(DECIDED)
        span.set_attribute("rpc.grpc.status_code", 0)


def four_spans(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span(
        "/ringfence.v1.DecisionService/Evaluate", kind=SpanKind.SERVER, attributes=ATTRS
    ) as span:
        for stage in ("facts", "aggregates", "evaluate"):
            with tracer.start_as_current_span(stage):
                pass
        span.set_attributes(DECIDED)
        span.set_attribute("rpc.grpc.status_code", 0)


def per_call_us(
    calls: int, fn: Callable[[], None], flush: Callable[[], object]
) -> tuple[float, float]:
    """(wall µs per call, process CPU µs per call: the export thread and the final flush
    included, so every span's encoding and sending is paid for)."""
    pid = os.getpid()
    for _ in range(min(2000, calls)):
        fn()
    flush()
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    for _ in range(calls):
        fn()
    flush()
    wall = time.perf_counter() - t0
    return wall / calls * 1e6, (cpu_seconds(pid) - cpu0) / calls * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--per-call-us", type=float, default=360.0)
    ns = ap.parse_args()
    print(f"# OpenTelemetry SDK cost per call ({machine()})")
    with child([str(BIN / "python"), str(REPO / "bench/otlp_sink.py")]) as sink:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink}"
        os.environ["OTEL_EXPORTER_OTLP_INSECURE"] = "true"
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        resource = Resource.create({"service.name": "ringfence"})
        bare = TracerProvider(resource=resource)
        # A queue large enough that no span is dropped: a dropped span is export not paid.
        queue = 4 * ns.calls + 10_000
        exporting = TracerProvider(resource=resource)
        exporting.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_queue_size=queue))
        sampled = TracerProvider(resource=resource, sampler=ParentBasedTraceIdRatio(0.1))
        sampled.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_queue_size=queue))

        def flush() -> None:
            exporting.force_flush()
            sampled.force_flush()

        cases: list[tuple[str, Callable[[], None]]] = [
            ("no tracing (API no-op)", lambda: one_span(trace.NoOpTracer())),
            ("1 span, SDK, no processor", lambda: one_span(bare.get_tracer("b"))),
            ("1 span + batch OTLP export", lambda: one_span(exporting.get_tracer("b"))),
            ("4 spans + batch OTLP export", lambda: four_spans(exporting.get_tracer("b"))),
            ("4 spans, 10 % sampled", lambda: four_spans(sampled.get_tracer("b"))),
        ]
        base: float | None = None
        for label, fn in cases:
            wall, cpu = per_call_us(ns.calls, fn, flush)
            if base is None:
                base = cpu  # the loop itself: subtracted from every case
            print(
                f"{label:<30}: {wall:7.1f} µs/call wall, {cpu:7.1f} µs CPU/call; tracing adds"
                f" {cpu - base:6.1f} µs = {100 * (cpu - base) / ns.per_call_us:5.1f} % of an"
                f" Evaluate's {ns.per_call_us:.0f} µs"
            )
        exporting.shutdown()
        sampled.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
