"""The chart rendered by Helm's engine: valid Kubernetes objects, locked down, probed, and
wired to the server's real flags."""

from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from deploy.deploy_support import (
    DOCKERFILE,
    KUBE_VERSIONS,
    by_kind,
    manifests,
    one,
    production_values,
    render,
    walk,
)

from server.cli import build_parser
from server.config import DELIVERY_OPTIONS, IP_DB_ENV, OPTIONS
from server.shutdown import drain_time

DECISION_SERVICE = "ringfence.v1.DecisionService"
REDIS = {"backend": "redis", "redis": {"url": "redis://:pw@redis:6379/0"}}
HASH_KEY = {"hashKey": "k" * 32}
PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAexample\n-----END PUBLIC KEY-----\n"
BUNDLE = {
    "url": "https://bundles.example.internal/risk/bundle.tar.gz",
    "publicKeys": {"release.pem": PUBLIC_KEY},
    "tokenSecret": "bundle-token",
    "caConfigMap": "bundle-ca",
}
RULES = {
    "_shared": {"common.rf": "# shared\n"},
    "demo": {
        "tenant.toml": 'fail_mode = "open"\n',
        "policy.rf": "# demo\n",
        "lists/privacy.csv": "number\n",
    },
}

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "production": production_values(),
    "autoscaling": {"state": REDIS, "autoscaling": {"enabled": True}, "auth": HASH_KEY},
    "rules from values": {"rules": RULES},
    "rules from a ConfigMap": {
        "rulesFrom": {
            "existingConfigMap": "risk-rules",
            "items": [{"key": "demo.policy.rf", "path": "demo/policy.rf"}],
        }
    },
    "rules from a volume": {
        "rulesFrom": {"volume": {"persistentVolumeClaim": {"claimName": "rules"}}}
    },
    "tls without client auth": {"tls": {"enabled": True, "secretName": "tls"}},
    "no metrics, no admin token": {
        "server": {"metrics": False},
        "auth": {"adminTokenEnabled": False},
    },
    "bundle": {"bundle": BUNDLE},
    "demo policy": {"demoPolicy": True},
    "extras": {
        "rules": RULES,
        "initContainers": [{"name": "fetch", "image": "busybox:1.36", "command": ["true"]}],
        "extraContainers": [{"name": "sync", "image": "{{ .Values.image.repository }}:x"}],
        "extraVolumes": [{"name": "lists", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "lists", "mountPath": "/var/lib/lists"}],
    },
}


def docs_for(name: str) -> list[dict[str, Any]]:
    return manifests(render(VARIANTS[name]))


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert containers[0]["name"] == "ringfence"
    return containers[0]  # type: ignore[no-any-return]


def server_policy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The NetworkPolicy selecting the server's pods (the other one is the test pod's)."""
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    (policy,) = [
        p
        for p in by_kind(docs, "NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"] == selector
    ]
    return policy  # type: ignore[no-any-return]


def env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_manifests_are_valid_kubernetes(variant: str, kube: str) -> None:
    docs = docs_for(variant)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema in kubernetes-validate; checked below
        kubernetes_validate.validate(doc, kube, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_are_locked_down(variant: str) -> None:
    docs = docs_for(variant)
    pods = [one(docs, "Deployment")["spec"]["template"]["spec"]]
    pods += [p["spec"] for p in by_kind(docs, "Pod")]  # the helm test pod
    assert len(pods) == 2
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"][:1]:  # extraContainers are the user's to lock down
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert "memory" in c["resources"]["limits"]
            assert "cpu" in c["resources"]["requests"]


def test_plain_grpc_gets_native_grpc_readiness_and_http_liveness() -> None:
    c = container(docs_for("defaults"))
    assert c["readinessProbe"]["grpc"] == {"port": 50051, "service": DECISION_SERVICE}
    # "The process answers", policy or not: a pod without one is not ready, not restarted.
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


@pytest.mark.parametrize("variant", ["production", "tls without client auth"])
def test_tls_probes_use_the_http_health_endpoint(variant: str) -> None:
    docs = docs_for(variant)
    c = container(docs)
    # No exec (a Python process per probe): plain HTTP to the server's health endpoint.
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert not any(k == "exec" and "ringfence" in str(v) for k, v in walk(c))
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "health")
    assert env(docs)["RINGFENCE_HEALTH_LISTEN"] == f"0.0.0.0:{port}"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["tls"] == "/etc/ringfence/tls"


@pytest.mark.parametrize("variant", VARIANTS)
def test_shutdown_outlasts_the_drain(variant: str) -> None:
    docs = docs_for(variant)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    e = env(docs)
    grace = float(e["RINGFENCE_GRACE"])
    drain = e["RINGFENCE_DRAIN_TIMEOUT"]
    # What the server makes of the setting (server/config.py), not a copy of its rule.
    drain_s = (
        drain_time(float(e["RINGFENCE_MAX_CONNECTION_AGE"])) if drain == "auto" else float(drain)
    )
    assert drain_s > 0  # a drain happens: the default ages connections
    sleep = int(container(docs)["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > sleep + drain_s + grace


@pytest.mark.parametrize("variant", VARIANTS)
def test_env_names_are_server_settings(variant: str) -> None:
    known = {env_name for _flag, env_name, _default, _help in (*OPTIONS, *DELIVERY_OPTIONS)}
    known |= {IP_DB_ENV, "RINGFENCE_IP_DB_POLL"}
    ours = {k for k in env(docs_for(variant)) if k.startswith("RINGFENCE_")}
    assert ours <= known, ours - known
    assert {"RINGFENCE_RULES", "RINGFENCE_LISTEN"} <= ours
    assert ours & {"RINGFENCE_STATE", "RINGFENCE_STATE_FILE"}


# The server's settings the chart does not set, each with why. Every other one is a chart
# value (or set from one), so an operator can tune it without extraArgs.
NOT_IN_THE_CHART = {
    "RINGFENCE_HASH_KEY": "given as RINGFENCE_HASH_KEY_FILE, from the chart's Secret",
    "RINGFENCE_ADMIN_TOKEN": "given as RINGFENCE_ADMIN_TOKEN_FILE, from the chart's Secret",
    "RINGFENCE_SEGMENTS": "the packaged table; a replacement goes through extraEnv",
    "RINGFENCE_STATE_SECRETS_DIR": "set only with state.tenantSecrets.existingSecret",
    "RINGFENCE_LIST_CHILD_MIN_KB": "a tuning of the list loader, for benchmarks",
    "RINGFENCE_BUNDLE_FILE": "the chart mounts the bundle URL Secret as a file",
    "RINGFENCE_BUNDLE_PUBLIC_KEY": "the chart gives a keyring (RINGFENCE_BUNDLE_KEYRING)",
    "RINGFENCE_BUNDLE_ALLOW_UNSIGNED": "for local testing only, never from the chart",
    "RINGFENCE_BUNDLE_TIMEOUT": "the server's default suits a registry in the cluster",
    "RINGFENCE_BUNDLE_TOKEN_REALM_HOSTS": "set with bundle.tokenRealmHosts when given",
}


def test_every_server_setting_reaches_the_chart() -> None:
    rendered: set[str] = set()
    for variant in VARIANTS:
        rendered |= {k for k in env(docs_for(variant)) if k.startswith("RINGFENCE_")}
    settings = {env_name for _f, env_name, _d, _h in (*OPTIONS, *DELIVERY_OPTIONS)}
    missing = settings - rendered - NOT_IN_THE_CHART.keys()
    assert not missing, f"server settings no chart value sets: {sorted(missing)}"
    assert NOT_IN_THE_CHART.keys() <= settings  # no stale exclusion


def test_the_charts_limits_are_the_servers_defaults() -> None:
    e = env(docs_for("defaults"))
    defaults = {env_name: d for _f, env_name, d, _h in OPTIONS}
    for name in (
        "RINGFENCE_COST_BUDGET",
        "RINGFENCE_COST_CEILING",
        "RINGFENCE_EVALUATION_DEADLINE_MS",
        "RINGFENCE_BATCH_DEADLINE_MS",
        "RINGFENCE_MAX_EVENT_LATENESS",
        "RINGFENCE_IDEMPOTENCY_WINDOW",
        "RINGFENCE_COMPILE_TIMEOUT",
        "RINGFENCE_COMPILE_MEMORY_MB",
        "RINGFENCE_COMPILE_WORKERS",
        "RINGFENCE_COMPILE_QUEUE",
    ):
        assert e[name] == defaults[name], name


def test_serve_args_parse() -> None:
    c = container(docs_for("defaults"))
    ns = build_parser().parse_args(c["args"])
    assert ns.command == "serve"


RULES_VARIANTS = [k for k, v in VARIANTS.items() if "rules" in v or "rulesFrom" in v]
NO_RULES = [v for v in VARIANTS if v not in RULES_VARIANTS and v not in ("bundle", "demo policy")]


@pytest.mark.parametrize("variant", NO_RULES)
def test_without_rules_the_pod_gets_an_empty_folder_not_the_demo(variant: str) -> None:
    # An empty folder over the image's example policy: the server loads no tenant and the
    # pod never turns Ready on a policy nobody chose.
    docs = docs_for(variant)
    mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "rules")
    assert mount["mountPath"] == env(docs)["RINGFENCE_RULES"]
    volume = next(
        v
        for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "rules"
    )
    assert "emptyDir" in volume
    assert "WILL NOT become Ready".lower() in render(VARIANTS[variant])[
        "ringfence/templates/NOTES.txt"
    ].lower().replace("\n", " ")


def test_only_demo_policy_serves_the_image_rules() -> None:
    docs = docs_for("demo policy")
    assert "rules" not in {m["name"] for m in container(docs)["volumeMounts"]}
    assert by_kind(docs, "ConfigMap") == []
    image_rules = [r for w, r in _instructions() if w == "ENV" and "RINGFENCE_RULES=" in r]
    assert f"RINGFENCE_RULES={env(docs)['RINGFENCE_RULES']}" in image_rules[0]
    assert "demoPolicy=true" in render(VARIANTS["demo policy"])["ringfence/templates/NOTES.txt"]


@pytest.mark.parametrize("variant", RULES_VARIANTS)
def test_rules_are_a_directory_mount(variant: str) -> None:
    docs = docs_for(variant)
    c = container(docs)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "rules")
    # subPath mounts never see ConfigMap updates, which would defeat hot reload.
    assert "subPath" not in mount
    assert "subPathExpr" not in mount
    assert mount["mountPath"] == env(docs)["RINGFENCE_RULES"] == "/etc/ringfence/rules"
    assert mount["readOnly"] is True
    assert not any(k == "subPath" for k, _ in walk(docs))
    pod = one(docs, "Deployment")["spec"]["template"]["metadata"]
    assert not any("rules" in key for key in pod.get("annotations", {}))  # no restart on edit


def test_rules_from_values_land_at_their_paths() -> None:
    docs = docs_for("rules from values")
    data = one(docs, "ConfigMap")["data"]
    volume = next(
        v
        for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "rules"
    )
    files = {item["path"]: data[item["key"]] for item in volume["configMap"]["items"]}
    expected = {
        f"{tenant}/{path}": text for tenant, tree in RULES.items() for path, text in tree.items()
    }
    assert files == expected
    assert set(data) == {item["key"] for item in volume["configMap"]["items"]}


@pytest.mark.parametrize(
    ("variant", "source"),
    [
        (
            "rules from a ConfigMap",
            {
                "configMap": {
                    "name": "risk-rules",
                    "items": [{"key": "demo.policy.rf", "path": "demo/policy.rf"}],
                }
            },
        ),
        ("rules from a volume", {"persistentVolumeClaim": {"claimName": "rules"}}),
    ],
)
def test_external_rules_sources(variant: str, source: dict[str, Any]) -> None:
    docs = docs_for(variant)
    volume = next(
        v
        for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "rules"
    )
    assert {k: v for k, v in volume.items() if k != "name"} == source
    assert by_kind(docs, "ConfigMap") == []


def test_production_shape() -> None:
    docs = docs_for("production")
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 3
    e = env(docs)
    # The Redis URL (with its password) is a mounted file, never an environment variable.
    assert "RINGFENCE_STATE" not in e
    assert e["RINGFENCE_STATE_FILE"] == "/etc/ringfence/state/url"
    state = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "state")
    assert state["secret"]["secretName"] == "ringfence-redis"
    assert state["secret"]["items"] == [{"key": "url", "path": "url"}]
    assert not any(k == "secretKeyRef" for k, _ in walk(container(docs)))
    assert e["RINGFENCE_TLS_CLIENT_CA"] == "/etc/ringfence/tls/ca.crt"
    assert e["OTEL_TRACES_EXPORTER"] == "otlp"
    assert e["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4317"
    assert by_kind(docs, "Secret") == []  # auth.existingSecret is used instead
    assert by_kind(docs, "HorizontalPodAutoscaler") == []
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind(docs, "Service")}
    assert services["rf-ringfence-headless"]["clusterIP"] == "None"
    for spec in services.values():
        grpc_port = next(p for p in spec["ports"] if p["name"] == "grpc")
        assert grpc_port["appProtocol"] == "grpc"
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert "metrics" in {p["name"] for p in services["rf-ringfence"]["ports"]}
    policy = server_policy(docs)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == {"grpc", "metrics"}
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    image = container(docs)["image"]
    assert image.endswith("@" + production_values()["image"]["digest"])


def test_autoscaling_replaces_replicas() -> None:
    docs = docs_for("autoscaling")
    assert "replicas" not in one(docs, "Deployment")["spec"]
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    assert hpa["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]


def test_generated_secret_and_given_secret() -> None:
    secret = one(docs_for("defaults"), "Secret")
    generated = secret["data"]
    assert set(generated) == {"hash-key", "admin-token"}
    # An uninstall or a values change never deletes it: the hash key names every Redis key.
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    given = one(
        manifests(render({"auth": {"hashKey": "k" * 32, "adminToken": "t" * 20}, "state": REDIS})),
        "Secret",
    )["data"]
    assert base64.b64decode(given["hash-key"]) == b"k" * 32
    assert set(given) == {"hash-key", "admin-token", "redis-url"}


def test_secret_change_rolls_pods_but_rules_change_does_not() -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = one(manifests(render(values)), "Deployment")["spec"]["template"]
        return pod["metadata"]["annotations"]["checksum/secret"]  # type: ignore[no-any-return]

    base = checksum({"rules": RULES})
    assert checksum({"rules": {"demo": {"policy.rf": "# changed\n"}}}) == base
    assert checksum({"rules": RULES, "auth": {"adminToken": "x" * 20}}) != base


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_test_pod_runs_the_health_command(variant: str) -> None:
    docs = docs_for(variant)
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["image"] == container(docs)["image"]
    ns = build_parser().parse_args(c["args"])
    assert ns.command == "health"
    assert ns.address == "rf-ringfence.risk.svc:50051"
    assert ns.service == DECISION_SERVICE
    assert c["command"] == json.loads(_instruction(DOCKERFILE.read_text(), "ENTRYPOINT"))
    # Its own labels: not selected by the Service, the PodDisruptionBudget or the
    # NetworkPolicy's podSelector (all select the server's labels).
    labels = pod["metadata"]["labels"]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= labels.items()
    for svc in by_kind(docs, "Service"):
        assert not svc["spec"]["selector"].items() <= labels.items()
    # ...and the chart's NetworkPolicy (on by default) lets it reach the gRPC port.
    for policy in [server_policy(docs)] if by_kind(docs, "NetworkPolicy") else []:
        grpc_rule = next(
            r
            for r in policy["spec"]["ingress"]
            if {"port": "grpc", "protocol": "TCP"} in r["ports"]
        )
        assert any(
            "podSelector" in peer
            and "namespaceSelector" not in peer
            and peer["podSelector"].get("matchLabels", {}).items() <= labels.items()
            for peer in grpc_rule["from"]
        ), grpc_rule


def test_notes_show_grpcurl_with_reflection() -> None:
    notes = render({})["ringfence/templates/NOTES.txt"]
    assert "grpcurl -plaintext localhost:50051 list" in notes
    assert "ringfence.v1.DecisionService/Evaluate" in notes
    tls_notes = render(production_values())["ringfence/templates/NOTES.txt"]
    assert "-plaintext" not in tls_notes


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
    return out


def _instruction(dockerfile: str, name: str) -> str:
    text = dockerfile.replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().upper().startswith(name + " ")]
    assert lines, f"no {name} in the Dockerfile"
    return lines[-1][len(name) + 1 :].strip()
