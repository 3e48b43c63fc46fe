"""The chart's delivery settings: bundles, secrets as files, a stable hash key, the rules
ConfigMap size check, NetworkPolicy by default, sizing, connection age, extra containers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import helm_python
import pytest
from deploy.deploy_support import by_kind, chart_copy, manifests, one, render

from server.config import DELIVERY_OPTIONS, OPTIONS

REDIS = {"backend": "redis", "redis": {"url": "redis://:pw@redis:6379/0"}}
PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAexample\n-----END PUBLIC KEY-----\n"
BUNDLE = {"url": "https://b.example.internal/rules.tar.gz", "publicKeys": {"ci.pem": PEM}}
ENV_TO_FLAG = {env: flag for flag, env, _d, _h in (*OPTIONS, *DELIVERY_OPTIONS)}


def docs(values: dict[str, Any]) -> list[dict[str, Any]]:
    return manifests(render(values))


def pod(values: dict[str, Any]) -> dict[str, Any]:
    return one(docs(values), "Deployment")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def env(values: dict[str, Any]) -> dict[str, Any]:
    c = pod(values)["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def volumes(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod(values)["volumes"]}


def mounts(values: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in pod(values)["containers"][0]["volumeMounts"]}


def as_flags(environment: dict[str, Any]) -> list[str]:
    """The server's flags for the chart's RINGFENCE_* variables (what the env would set)."""
    out = []
    for name, value in environment.items():
        if name.startswith("RINGFENCE_") and isinstance(value, str):
            out += [ENV_TO_FLAG[name], value]
    return out


def test_bundle_mode_wiring() -> None:
    values = {"bundle": {**BUNDLE, "tokenSecret": "tok", "caConfigMap": "ca"}}
    e = env(values)
    assert e["RINGFENCE_BUNDLE"] == BUNDLE["url"]
    m = mounts(values)
    assert e["RINGFENCE_BUNDLE_DIR"] == m["bundle-work"]
    assert e["RINGFENCE_BUNDLE_KEYRING"] == m["bundle-keys"]
    assert e["RINGFENCE_BUNDLE_TOKEN_FILE"].startswith(m["bundle-token"] + "/")
    assert e["RINGFENCE_BUNDLE_CA"].startswith(m["bundle-ca"] + "/")
    assert "rules" not in m  # the bundle replaces the rules folder
    v = volumes(values)
    # On the node's disk: a memory-backed emptyDir would count against the memory limit.
    assert v["bundle-work"]["emptyDir"] == {"sizeLimit": "2Gi"}
    keys = next(
        c
        for c in by_kind(docs(values), "ConfigMap")
        if c["metadata"]["name"].endswith("bundle-keys")
    )
    assert keys["data"] == {"ci.pem": PEM}
    assert v["bundle-keys"]["configMap"]["name"] == keys["metadata"]["name"]
    # Every variable is a real serve flag, and the values parse as the server would.
    parser = argparse.ArgumentParser()
    for flag, _env, default, _help in (*OPTIONS, *DELIVERY_OPTIONS):
        parser.add_argument(flag, default=default)
    ns = parser.parse_args(as_flags(e))
    assert (ns.bundle, float(ns.bundle_poll), float(ns.bundle_jitter)) == (BUNDLE["url"], 30.0, 5.0)


@pytest.mark.parametrize(
    "url",
    ["oci://registry.example/risk/rules:prod", "oci+http://10.0.0.5:5000/rules@sha256:" + "a" * 64],
)
def test_an_oci_bundle_reference_is_passed_as_it_is(url: str) -> None:
    e = env({"bundle": {**BUNDLE, "url": url}})
    assert e["RINGFENCE_BUNDLE"] == url


def test_existing_keyring_configmap() -> None:
    values = {"bundle": {"url": BUNDLE["url"], "keyringConfigMap": "risk-keys"}}
    assert volumes(values)["bundle-keys"]["configMap"]["name"] == "risk-keys"
    assert by_kind(docs(values), "ConfigMap") == []


def test_tenant_state_secrets_are_files() -> None:
    values = {
        "rules": {"demo": {"policy.rf": "#\n"}},
        "state": {
            "tenantSecrets": {"existingSecret": "tenant-redis"},
            "backends": {"acme-redis": {"tenants": ["acme"]}},
        },
    }
    e = env(values)
    assert e["RINGFENCE_STATE_SECRETS_DIR"] == mounts(values)["tenant-state"]
    assert volumes(values)["tenant-state"]["secret"]["secretName"] == "tenant-redis"
    assert e["RINGFENCE_STATE_BACKEND_TENANTS"] == "acme-redis=acme"
    assert "RINGFENCE_STATE_BACKENDS" not in e


def test_named_backends_and_who_may_pick_them() -> None:
    values = {
        "state": {
            "backends": {
                "shared-b": {"url": "redis://redis-b.redis:6379/0", "tenants": ["*"]},
                "scratch": {"url": "memory://", "tenants": ["acme", "beta"]},
            }
        }
    }
    e = env(values)
    # The variables the server reads (server/config.py), names in order.
    assert (
        e["RINGFENCE_STATE_BACKENDS"] == "scratch=memory:// shared-b=redis://redis-b.redis:6379/0"
    )
    assert e["RINGFENCE_STATE_BACKEND_TENANTS"] == "scratch=acme,beta shared-b=*"
    assert "RINGFENCE_STATE_BACKENDS" not in env({})


def test_grpc_limits() -> None:
    e = env({"server": {"maxConcurrentRpcs": 500, "streamIdleTimeoutSeconds": 60}})
    assert e["RINGFENCE_MAX_CONCURRENT_RPCS"] == "500"
    assert e["RINGFENCE_MAX_STREAMS_PER_CONNECTION"] == "100"
    assert e["RINGFENCE_STREAM_IDLE_TIMEOUT"] == "60"


def test_chart_secret_redis_url_is_a_file() -> None:
    values = {"state": REDIS, "auth": {"hashKey": "k" * 32}}
    e = env(values)
    assert e["RINGFENCE_STATE_FILE"] == mounts(values)["state"] + "/url"
    assert volumes(values)["state"]["secret"]["items"] == [{"key": "redis-url", "path": "url"}]


def test_defaults_network_policy_sizing_and_connection_age() -> None:
    rendered = docs({})
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(rendered, "NetworkPolicy")}
    assert policies["rf-ringfence"]["policyTypes"] == ["Ingress"]
    # The helm test pod gets its own deny-all-ingress policy.
    test_selector = policies["rf-ringfence-test"]["podSelector"]["matchLabels"]
    assert test_selector.items() <= one(rendered, "Pod")["metadata"]["labels"].items()
    assert "ingress" not in policies["rf-ringfence-test"]
    resources = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    e = env({})
    assert (e["RINGFENCE_MAX_CONNECTION_AGE"], e["RINGFENCE_MAX_CONNECTION_AGE_GRACE"]) == (
        "30",
        "30",
    )
    assert e["RINGFENCE_DRAIN_TIMEOUT"] == "auto"


def test_extra_containers_volumes_and_init_containers() -> None:
    values = {
        "rules": {"demo": {"policy.rf": "#\n"}},
        "initContainers": [{"name": "fetch", "image": "{{ .Values.image.repository }}:init"}],
        "extraContainers": [{"name": "sync", "image": "git-sync:4"}],
        "extraVolumes": [{"name": "lists", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "lists", "mountPath": "/var/lib/lists"}],
    }
    spec = pod(values)
    assert spec["initContainers"] == [{"name": "fetch", "image": "ghcr.io/example/ringfence:init"}]
    assert [c["name"] for c in spec["containers"]] == ["ringfence", "sync"]
    assert volumes(values)["lists"] == {"name": "lists", "emptyDir": {}}
    assert mounts(values)["lists"] == "/var/lib/lists"


def test_rules_watch_poll() -> None:
    values = {
        "rulesFrom": {"volume": {"persistentVolumeClaim": {"claimName": "rules"}}},
        "rulesWatch": {"pollMs": 2000},
    }
    assert env(values)["RINGFENCE_WATCH_POLL_MS"] == "2000"


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(
            {"replicaCount": 3, "state": REDIS, "auth": {"hashKey": "k" * 32}}, id="hashKey"
        ),
        pytest.param(
            {"replicaCount": 3, "state": REDIS, "auth": {"existingSecret": "s"}},
            id="existingSecret",
        ),
        pytest.param({}, id="one replica, memory: a generated key is fine"),
    ],
)
def test_hash_key_accepted(values: dict[str, Any]) -> None:
    assert one(docs(values), "Deployment")


def test_rules_just_under_the_configmap_limit_render() -> None:
    big = "+8613800000000\n" * (850 * 1024 // 15)
    assert one(docs({"rules": {"demo": {"lists/big.csv": big, "policy.rf": "#\n"}}}), "ConfigMap")


FAILS: list[tuple[str, dict[str, Any], str]] = [
    (
        "two replicas, generated hash key",
        {"replicaCount": 2, "state": REDIS},
        "need a hash key that never changes",
    ),
    (
        "autoscaling, generated hash key",
        {"autoscaling": {"enabled": True}, "state": REDIS},
        "need a hash key that never changes",
    ),
    ("redis, generated hash key", {"state": REDIS}, "need a hash key that never changes"),
    ("bundle without keys", {"bundle": {"url": BUNDLE["url"]}}, "needs bundle.publicKeys"),
    (
        "bundle and rules",
        {"bundle": BUNDLE, "rules": {"demo": {"policy.rf": "#\n"}}},
        "bundle.url replaces rules",
    ),
    (
        "rules over 900 KiB",
        {"rules": {"demo": {"lists/big.csv": "+8613800000000\n" * (950 * 1024 // 15)}}},
        "deliver them as a signed bundle",
    ),
    (
        "scraping blocked by the policy",
        {"serviceMonitor": {"enabled": True}},
        "set networkPolicy.metricsFrom",
    ),
]


@pytest.mark.parametrize(("values", "message"), [pytest.param(v, m, id=i) for i, v, m in FAILS])
def test_chart_refuses(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    chart = chart_copy(tmp_path, None, schema=False)
    with pytest.raises(helm_python.HelmRenderError) as err:
        render(values, chart=chart)
    assert message in str(err.value)


BAD_SCHEMA: list[tuple[str, dict[str, Any], str]] = [
    ("bundle URL not http", {"bundle": {"url": "ftp://x/b.tgz"}}, "/bundle/url"),
    ("bundle URL oci in name only", {"bundle": {"url": "ocix://r/rules:prod"}}, "/bundle/url"),
    (
        "public key not PEM",
        {"bundle": {"publicKeys": {"k.pem": "hello"}}},
        "/bundle/publicKeys/k.pem",
    ),
    ("public key file name", {"bundle": {"publicKeys": {"../k": PEM}}}, "invalid propertyName"),
    ("health port zero", {"healthHttp": {"port": 0}}, "/healthHttp/port"),
    ("mount without a path", {"extraVolumeMounts": [{"name": "x"}]}, "/extraVolumeMounts/0"),
    ("negative poll", {"rulesWatch": {"pollMs": -1}}, "/rulesWatch/pollMs"),
    ("connection age text", {"connectionAge": {"maxSeconds": "5m"}}, "/connectionAge/maxSeconds"),
]


@pytest.mark.parametrize(
    ("values", "fragment"), [pytest.param(v, f, id=i) for i, v, f in BAD_SCHEMA]
)
def test_schema_rejects_delivery_values(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as err:
        helm_python.Chart.load(
            Path(__file__).resolve().parents[2] / "helm" / "ringfence"
        ).validate_schema(values)
    assert fragment in str(err.value)


def pod_template(values: dict[str, Any]) -> dict[str, Any]:
    return one(docs(values), "Deployment")["spec"]["template"]  # type: ignore[no-any-return]


def test_a_restart_only_where_the_server_cannot_re_read() -> None:
    """The admin token is read at start: changing it changes the pod template (a rollout).
    Bundle keys are re-read by the running server: changing them leaves the template as it
    is, and the keys' ConfigMap carries the change to the pods without a restart."""
    hash_key = "k" * 32
    base = {"bundle": BUNDLE, "auth": {"hashKey": hash_key, "adminToken": "a" * 16}}
    rotated_admin = {**base, "auth": {"hashKey": hash_key, "adminToken": "b" * 16}}
    other = PEM.replace("example", "another")
    more_keys = {**base, "bundle": {**BUNDLE, "publicKeys": {"ci.pem": PEM, "ci-2.pem": other}}}
    assert pod_template(rotated_admin) != pod_template(base)
    assert pod_template(more_keys) == pod_template(base)
    keys = next(
        c for c in by_kind(docs(more_keys), "ConfigMap") if c["metadata"]["name"].endswith("keys")
    )
    assert set(keys["data"]) == {"ci.pem", "ci-2.pem"}
