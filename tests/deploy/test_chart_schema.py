"""values.schema.json and the chart's own checks refuse bad values with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
from deploy.deploy_support import (
    CHART,
    LINT_ERROR,
    chart_copy,
    production_values,
    render,
    sdkpy_lint,
)

REDIS = {"backend": "redis", "redis": {"url": "redis://redis:6379/0"}}

# (values, a fragment of Helm's schema error)
BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("two replicas, memory state", {"replicaCount": 2}, "/replicaCount"),
    ("autoscaling, memory state", {"autoscaling": {"enabled": True}}, "/autoscaling/enabled"),
    ("zero replicas", {"replicaCount": 0}, "/replicaCount"),
    ("replicas as text", {"replicaCount": "3"}, "/replicaCount"),
    ("negative cpu request", {"resources": {"requests": {"cpu": "-1"}}}, "/resources/requests/cpu"),
    (
        "negative memory limit",
        {"resources": {"limits": {"memory": -512}}},
        "/resources/limits/memory",
    ),
    ("unknown top-level key", {"replicas": 3}, "additional properties 'replicas'"),
    ("misspelt nested key", {"server": {"grpcPrt": 50051}}, "additional properties 'grpcPrt'"),
    ("port out of range", {"server": {"grpcPort": 70000}}, "/server/grpcPort"),
    ("port zero", {"server": {"metricsPort": 0}}, "/server/metricsPort"),
    ("unknown state backend", {"state": {"backend": "memcached"}}, "/state/backend"),
    (
        "redis URL without scheme",
        {"state": {**REDIS, "redis": {"url": "redis:6379"}}},
        "/state/redis/url",
    ),
    ("bad log level", {"server": {"logLevel": "verbose"}}, "/server/logLevel"),
    (
        "decision log to a file",
        {"server": {"decisionLog": "/var/log/d.jsonl"}},
        "/server/decisionLog",
    ),
    (
        "bad tenant name",
        {"rules": {"Demo Tenant": {"policy.rf": ""}}},
        "invalid propertyName 'Demo Tenant'",
    ),
    (
        "rule path escaping the tenant",
        {"rules": {"demo": {"../x.rf": ""}}},
        "invalid propertyName '../x.rf'",
    ),
    ("rule file not text", {"rules": {"demo": {"policy.rf": 3}}}, "/rules/demo/policy.rf"),
    ("short hash key", {"auth": {"hashKey": "secret"}}, "/auth/hashKey"),
    ("image digest not sha256", {"image": {"digest": "latest"}}, "/image/digest"),
    ("sampler ratio above 1", {"otel": {"samplerRatio": "1.5"}}, "/otel/samplerRatio"),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    (
        "password in a backend URL",
        {"state": {"backends": {"b": {"url": "redis://:pw@redis-b:6379/0", "tenants": ["*"]}}}},
        "/state/backends/b/url",
    ),
    ("backend offered to nobody", {"state": {"backends": {"b": {"url": "memory://"}}}}, "tenants"),
    (
        "bad backend name",
        {"state": {"backends": {"../b": {"tenants": ["acme"]}}}},
        "invalid propertyName '../b'",
    ),
    (
        "bad tenant in a backend",
        {"state": {"backends": {"b": {"tenants": ["Acme Co"]}}}},
        "/state/backends/b/tenants/0",
    ),
    ("zero concurrent calls", {"server": {"maxConcurrentRpcs": 0}}, "/server/maxConcurrentRpcs"),
]

BAD_PARAMS = [pytest.param(v, f, id=i) for i, v, f in BAD_VALUES]


@pytest.mark.parametrize(("values", "fragment"), BAD_PARAMS)
def test_schema_rejects(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as err:
        helm_python.Chart.load(CHART).validate_schema(values)
    assert fragment in str(err.value)


@pytest.mark.parametrize(("values", "fragment"), BAD_PARAMS)
def test_helm_sdkpy_lint_rejects(tmp_path: Path, values: dict[str, Any], fragment: str) -> None:
    errors = [m for m in sdkpy_lint(chart_copy(tmp_path, values)) if m["Severity"] >= LINT_ERROR]
    assert "values.yaml" in [m["Path"] for m in errors]


GOOD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("production", production_values()),
    ("three replicas on redis", {"replicaCount": 3, "state": REDIS}),
    ("autoscaling on redis", {"autoscaling": {"enabled": True}, "state": REDIS}),
    ("numeric cpu", {"resources": {"requests": {"cpu": 0.5}}}),
    ("percent budget", {"podDisruptionBudget": {"maxUnavailable": "25%"}}),
    (
        "shared library and nested list",
        {"rules": {"_shared": {"lib.rf": ""}, "demo": {"lists/vip.csv": "n\n"}}},
    ),
]


@pytest.mark.parametrize("values", [pytest.param(v, id=i) for i, v in GOOD_VALUES])
def test_schema_accepts(values: dict[str, Any]) -> None:
    helm_python.Chart.load(CHART).validate_schema(values)


# Checks the chart makes with `fail` in its templates: they must hold even when the schema
# is skipped (helm --skip-schema-validation), and say what to change.
FAILS: list[tuple[str, dict[str, Any], str]] = [
    (
        "two replicas, memory state",
        {"replicaCount": 2},
        'replicaCount is 2 but state.backend is "memory"',
    ),
    (
        "autoscaling, memory state",
        {"autoscaling": {"enabled": True}},
        'autoscaling.enabled is true but state.backend is "memory"',
    ),
    (
        "redis without a URL",
        {"state": {"backend": "redis"}},
        'state.backend is "redis" but no URL is given',
    ),
    (
        "grace longer than the pod's",
        {"server": {"shutdownGraceSeconds": 30}},
        "terminationGracePeriodSeconds (60) must exceed",
    ),
    (
        "a drain longer than the pod's",
        {"connectionAge": {"maxSeconds": 300}},
        "terminationGracePeriodSeconds (60) must exceed server.preStopSleepSeconds + drainSeconds",
    ),
    ("the old grace name", {"server": {"graceSeconds": 10}}, "server.shutdownGraceSeconds"),
    (
        "the old age grace name",
        {"connectionAge": {"graceSeconds": 30}},
        "connectionAge.callGraceSeconds",
    ),
    (
        "two rules sources",
        {"rules": {"demo": {"policy.rf": ""}}, "rulesFrom": {"existingConfigMap": "mine"}},
        "choose one rules source",
    ),
    ("TLS without a secret", {"tls": {"enabled": True}}, "tls.enabled needs tls.secretName"),
    ("same port twice", {"server": {"metricsPort": 50051}}, "both 50051"),
    (
        "min above max",
        {"state": REDIS, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
        "autoscaling.minReplicas (5) is above autoscaling.maxReplicas (2)",
    ),
]


@pytest.mark.parametrize(("values", "message"), [pytest.param(v, m, id=i) for i, v, m in FAILS])
def test_template_refuses(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    chart = chart_copy(tmp_path, None, schema=False)
    with pytest.raises(helm_python.HelmRenderError) as err:
        render(values, chart=chart)
    assert message in str(err.value)
