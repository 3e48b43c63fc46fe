"""Traces, metrics and the decision log, checked on a running server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import request, running_server

from server.api import decision_pb2 as pb
from server.observability.telemetry import tracing_from_env

NUMBER = "+8613800138000"
RAW_FORMS = ("8613800138000", "13800138000", "138 0013 8000")


def _no_raw_number(value: object) -> bool:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return not any(raw in text for raw in RAW_FORMS)


async def test_span_tree_and_no_raw_number(rules_copy: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with running_server(rules_copy, tracer_provider=provider) as s:
        await s.decisions.Evaluate(
            request("+86 138 0013 8000", event={"scene": "register", "app_id": "shop"}),
            timeout=5,
        )
    spans = exporter.get_finished_spans()
    by_name = {sp.name: sp for sp in spans}
    root = by_name["/ringfence.v1.DecisionService/Evaluate"]
    children = {sp.name for sp in spans if sp.parent and sp.parent.span_id == root.context.span_id}
    assert {"facts", "evaluate"} <= children
    assert root.attributes["ringfence.tenant"] == "demo"
    assert root.attributes["ringfence.action"] in ("allow", "review", "block")
    assert root.attributes["ringfence.policy_version"]
    assert str(root.attributes["ringfence.phone_hash"]).startswith("h:")
    for sp in spans:
        assert _no_raw_number(dict(sp.attributes or {})), sp.name
        for ev in sp.events:
            assert _no_raw_number(dict(ev.attributes or {})), sp.name


async def test_metrics_endpoint_is_scrapable(rules_copy: Path) -> None:
    async with running_server(rules_copy, metrics_listen="127.0.0.1:0") as s:
        for _ in range(3):
            await s.decisions.Evaluate(request(NUMBER), timeout=5)
        with contextlib.suppress(Exception):
            await s.decisions.Evaluate(request(NUMBER, tenant="nobody"), timeout=5)
        url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    text = body.decode()
    assert "ringfence_decisions_total{" in text
    assert 'tenant="demo"' in text
    assert "ringfence_decision_duration_seconds_bucket" in text
    assert 'ringfence_request_errors_total{code="NOT_FOUND"' in text
    assert "ringfence_policy_reloads_total" in text
    assert "ringfence_phone_cache_hits" in text
    assert _no_raw_number(text)


async def test_decision_log_lines_hash_the_number(rules_copy: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.jsonl"
    async with running_server(rules_copy, decision_log=str(log_path)) as s:
        resp = await s.decisions.Evaluate(
            request(
                "+86 138 0013 8000",
                request_id="dl-1",
                event={"scene": "register", "app_id": "shop"},
            ),
            timeout=5,
        )
        assert resp.action != pb.ACTION_UNSPECIFIED
    lines = [json.loads(x) for x in log_path.read_text().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "dl-1"
    assert line["tenant"] == "demo"
    assert line["policy_version"] == resp.policy_version
    assert line["phone"]["hash"].startswith("h:")
    assert line["event"]["scene"] == "register"
    assert line["decision"]["action"] == pb.Action.Name(resp.action).removeprefix("ACTION_").lower()
    assert _no_raw_number(line)


async def test_incoming_trace_context_is_continued(rules_copy: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    async with running_server(rules_copy, tracer_provider=provider) as s:
        await s.decisions.Evaluate(
            request(NUMBER),
            metadata=(("traceparent", f"00-{trace_id}-{parent}-01"),),
            timeout=5,
        )
        # Health checks are not traced: they would drown the traces that matter.
        from grpc_health.v1 import health_pb2

        await s.health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    spans = exporter.get_finished_spans()
    root = next(sp for sp in spans if sp.name == "/ringfence.v1.DecisionService/Evaluate")
    assert format(root.context.trace_id, "032x") == trace_id
    assert root.parent is not None
    assert format(root.parent.span_id, "016x") == parent
    assert root.attributes["rpc.grpc.status_code"] == 0
    assert not any("Health" in sp.name for sp in spans)


async def test_debug_logs_mask_the_number(rules_copy: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from server.observability.logs import JsonFormatter

    with caplog.at_level(logging.DEBUG, logger="ringfence.decide"):
        async with running_server(rules_copy) as s:
            await s.decisions.Evaluate(request("+86 138 0013 8000", request_id="log-1"), timeout=5)
    records = [r for r in caplog.records if r.getMessage() == "decided"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "log-1"
    assert line["phone"] == "+8613****00"
    assert _no_raw_number(line)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "ParentBased{root:TraceIdRatioBased{0.1}"),  # the default: 10 % of new traces
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, "ParentBased{root:AlwaysOnSampler"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
            "ParentBased{root:TraceIdRatioBased{0.5}",
        ),
    ],
)
def test_tracing_samples_a_tenth_unless_told(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    provider = tracing_from_env()
    assert provider is not None
    try:
        assert provider.sampler.get_description().startswith(expected)
    finally:
        provider.shutdown()
