from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from server.observability.latency import LatencyHistogram


def test_buckets_are_cumulative_per_tenant() -> None:
    h = LatencyHistogram((0.001, 0.01))
    for v in (0.0005, 0.001, 0.005, 0.5):
        h.observe("a", v)
    h.observe("b", 0.02)
    (family,) = h.collect()
    samples = {
        (s.name, s.labels.get("tenant"), s.labels.get("le")): s.value
        for s in family.samples
        if s.labels["code"] == "OK"
    }
    assert samples[("ringfence_decision_duration_seconds_bucket", "a", "0.001")] == 2
    assert samples[("ringfence_decision_duration_seconds_bucket", "a", "0.01")] == 3
    assert samples[("ringfence_decision_duration_seconds_bucket", "a", "+Inf")] == 4
    assert samples[("ringfence_decision_duration_seconds_count", "a", None)] == 4
    assert samples[("ringfence_decision_duration_seconds_sum", "a", None)] == pytest.approx(0.5065)
    assert samples[("ringfence_decision_duration_seconds_bucket", "b", "0.01")] == 0
    assert samples[("ringfence_decision_duration_seconds_bucket", "b", "+Inf")] == 1


def test_exposition() -> None:
    registry = CollectorRegistry()
    h = LatencyHistogram()
    registry.register(h)
    h.observe("demo", 0.0003)
    h.observe("demo", 0.2, "UNAVAILABLE")
    text = generate_latest(registry).decode()
    assert (
        'ringfence_decision_duration_seconds_bucket{code="OK",le="0.0005",tenant="demo"} 1.0'
    ) in text
    assert (
        'ringfence_decision_duration_seconds_bucket{code="UNAVAILABLE",le="0.25",tenant="demo"} 1.0'
    ) in text
    assert 'ringfence_decision_duration_seconds_count{code="UNAVAILABLE",tenant="demo"} 1.0' in text
