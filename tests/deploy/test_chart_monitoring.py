"""The chart's monitoring extras (dashboards:, prometheusRule:) pass Helm's lint, render
valid objects, and refuse bad values with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from deploy.deploy_support import CHART, KUBE_VERSIONS, chart_copy, manifests, one, render

BOTH = {"dashboards": {"enabled": True}, "prometheusRule": {"enabled": True}}


def test_strict_lint_with_both_enabled() -> None:
    report = helm_python.lint(CHART, BOTH, strict=True, namespace="risk")
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert report["errors"] == []


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_dashboard_configmap_is_valid_kubernetes(kube: str) -> None:
    kubernetes_validate.validate(one(manifests(render(BOTH)), "ConfigMap"), kube, strict=True)


def test_prometheus_rule_shape() -> None:
    rule = one(manifests(render(BOTH)), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == "rf-ringfence"
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}
            assert {"summary", "description", "runbook_url"} == set(r["annotations"])


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("unknown dashboards key", {"dashboards": {"enable": True}}, "additional properties 'enable'"),
    ("label with a space", {"dashboards": {"label": "grafana dashboard"}}, "/dashboards/label"),
    ("label value not text", {"dashboards": {"labelValue": 1}}, "/dashboards/labelValue"),
    ("bad namespace", {"dashboards": {"namespace": "Monitoring"}}, "/dashboards/namespace"),
    (
        "runbook URL with a fragment",
        {"prometheusRule": {"runbookBaseUrl": "https://wiki/ops#alerts"}},
        "/prometheusRule/runbookBaseUrl",
    ),
    (
        "selector that closes the braces",
        {"prometheusRule": {"selector": 'job="x"} or vector(1) or up{'}},
        "/prometheusRule/selector",
    ),
    ("latency zero", {"prometheusRule": {"latencyP99Seconds": 0}}, "/prometheusRule/latencyP99"),
    ("ratio above 1", {"prometheusRule": {"degradedRatio": 2}}, "/prometheusRule/degradedRatio"),
    ("factor of 1", {"prometheusRule": {"blockRateFactor": 1}}, "/prometheusRule/blockRateFactor"),
    ("floor as text", {"prometheusRule": {"blockRateFloor": "1%"}}, "/prometheusRule/blockRate"),
]


@pytest.mark.parametrize(("values", "fragment"), [pytest.param(v, f, id=i) for i, v, f in BAD])
def test_schema_rejects(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as err:
        helm_python.Chart.load(CHART).validate_schema(values)
    assert fragment in str(err.value)


@pytest.mark.parametrize("section", ["dashboards", "prometheusRule"])
def test_needs_the_metrics_endpoint(tmp_path: Path, section: str) -> None:
    chart = chart_copy(tmp_path, None, schema=False)
    with pytest.raises(helm_python.HelmRenderError) as err:
        render({section: {"enabled": True}, "server": {"metrics": False}}, chart=chart)
    assert f"{section}.enabled needs server.metrics: true" in str(err.value)
