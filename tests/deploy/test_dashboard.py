"""The chart's Grafana dashboard: a ConfigMap the Grafana sidecar picks up, a well-formed
dashboard, and every panel's query answered with data by a real Prometheus scraping a
real Ringfence server under traffic."""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from bundle_support import make_keys, publish
from conftest_nginx import NginxServer
from conftest_redis import free_port
from deploy.deploy_support import CHART, manifests, one, render
from deploy.prometheus_support import Prometheus
from support import RINGFENCE, copy_rules, wait_serving

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc

JOB = "rf-ringfence"  # what the ServiceMonitor's job is for release "rf"
SCRAPE = "500ms"
# What Grafana puts in for the variables: all tenants, a rate window of 4 scrape intervals
# (Grafana's own rule for $__rate_interval) of SCRAPE.
VARIABLES = {
    "$cluster": ".*",
    "$namespace": ".*",
    "$job": JOB,
    "$tenant": ".*",
    "$__rate_interval": "2s",
}
QUERY_DEADLINE_S = 30.0
TRAFFIC_LIMIT_S = 60.0  # the traffic thread stops by itself after this
UNEXPECTED: list[str] = []  # errors the traffic got other than those it asks for


def dashboard_configmap(values: dict[str, Any] | None = None) -> dict[str, Any]:
    docs = manifests(render({"dashboards": {"enabled": True, **(values or {})}}))
    return one(docs, "ConfigMap")


@functools.cache
def _default_dashboard_text() -> str:
    data = dashboard_configmap()["data"]
    assert list(data) == ["ringfence.json"]
    return str(data["ringfence.json"])


def dashboard() -> dict[str, Any]:
    """The dashboard as the chart renders it with defaults (rendered once per session)."""
    board: dict[str, Any] = json.loads(_default_dashboard_text())
    return board


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title + refId, PromQL with the variables filled in as Grafana would)."""
    out = []
    for panel in panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            out.append((f"{panel['title']} [{target['refId']}]", expr))
    return out


def test_configmap_for_the_grafana_sidecar() -> None:
    cm = dashboard_configmap()
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["name"] == "rf-ringfence-dashboard"
    assert "namespace" not in cm["metadata"]  # the release's
    assert json.loads(cm["data"]["ringfence.json"]) == json.loads(
        (CHART / "dashboards" / "ringfence.json").read_text(encoding="utf-8")
    )
    other = dashboard_configmap(
        {
            "label": "my_dashboards",
            "labelValue": "yes",
            "namespace": "monitoring",
            "annotations": {"grafana_folder": "Risk"},
        }
    )
    assert other["metadata"]["labels"]["my_dashboards"] == "yes"
    assert other["metadata"]["namespace"] == "monitoring"
    assert other["metadata"]["annotations"] == {"grafana_folder": "Risk"}
    assert not [d for d in manifests(render({})) if d["kind"] == "ConfigMap"]


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "cluster", "namespace", "job", "tenant"]
    # "All" must match series without the label (one cluster: no cluster label at all).
    assert variables["cluster"]["allValue"] == variables["namespace"]["allValue"] == ".*"
    assert variables["datasource"]["query"] == "prometheus"
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, p["title"]
        xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        mine = {(x, y) for x in xs for y in ys}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
    for p in panels(board):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"]


@pytest.mark.parametrize(
    "needed",
    [
        r"sum by \(tenant, action\) \(rate\(ringfence_decisions_total",
        r"ringfence_rule_hits_total\{[^}]*shadow=\"false\"",
        r"ringfence_rule_hits_total\{[^}]*shadow=\"true\"",
        r"histogram_quantile\(0\.5, .*ringfence_decision_duration_seconds_bucket",
        r"histogram_quantile\(0\.99, .*ringfence_decision_duration_seconds_bucket",
        r"ringfence_degraded_decisions_total",
        r"sum by \(code\) \(rate\(ringfence_request_errors_total",
        r"ringfence_policy_reloads_total",
        r"ringfence_backend_errors_total",
        r"sum by \(code, le\) \(rate\(ringfence_decision_duration_seconds_bucket",
        r"sum by \(backend\) \(rate\(ringfence_state_errors_total",
        r"ringfence_bundle_last_success_timestamp_seconds",
        r"ringfence_bundle_polls_total",
        r"ringfence_bundle_info",
        r"ringfence_bundle_signer_trusted",
        r"process_resident_memory_bytes",
        r"ringfence_child_processes_resident_memory_bytes",
        r"rate\(process_cpu_seconds_total",
    ],
)
def test_dashboard_shows(needed: str) -> None:
    assert any(re.search(needed, expr) for _, expr in queries(dashboard())), needed


def test_every_query_follows_the_cluster_and_namespace() -> None:
    for name, expr in queries(dashboard()):
        raw = expr.replace(JOB, "$job")
        assert raw.count('cluster=~".*", namespace=~".*", job=~"$job"') == raw.count("job="), name


# --- the live test --------------------------------------------------------------------


def flaky_tenant(rules: Path) -> list[str]:
    """A copy of demo whose own state backend is a Redis port nobody listens on: every
    decision is degraded and counts a backend error. Returns the server flags that name
    that backend and offer it to the tenant."""
    shutil.copytree(rules / "demo", rules / "flaky")
    (rules / "flaky" / "tenant.toml").write_text(
        'fail_mode = "open"\nstate = "flaky-redis"\n', encoding="utf-8"
    )
    return [
        "--state-backend",
        f"flaky-redis=redis://127.0.0.1:{free_port()}/0",
        "--state-backend-tenants",
        "flaky-redis=flaky",
    ]


def broken_tenant(rules: Path) -> None:
    """A tenant whose policy never compiled: it only ever gets errors (UNAVAILABLE)."""
    (rules / "broken").mkdir()
    (rules / "broken" / "policy.rf").write_text("rule oops { when ??? }\n", encoding="utf-8")


EXPECTED_ERRORS = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE,  # the broken tenant only
)


def traffic(address: str, stop: threading.Event, unexpected: list[str]) -> None:
    """Until told to stop (or TRAFFIC_LIMIT_S): runs of consecutive MVNO numbers (live and
    shadow rule hits, reviews and blocks), the flaky tenant, bad numbers, unknown tenants."""
    deadline = time.monotonic() + TRAFFIC_LIMIT_S
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        n = 0
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            register = pb.Event(scene="register", app_id="shop")
            calls = [
                pb.EvaluateRequest(tenant="demo", phone_number=f"+86171{n:08d}", event=register),
                pb.EvaluateRequest(tenant="flaky", phone_number=f"+86138{n:08d}", event=register),
                pb.EvaluateRequest(tenant="demo", phone_number="not a number"),
                pb.EvaluateRequest(tenant="nobody", phone_number="+8613800138000"),
                pb.EvaluateRequest(tenant="broken", phone_number="+8613800138000"),
            ]
            for req in calls:
                try:
                    stub.Evaluate(req, timeout=5)
                except grpc.RpcError as exc:
                    expected = exc.code() in EXPECTED_ERRORS
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        expected = req.tenant == "broken"
                    if not expected:
                        unexpected.append(f"{req.tenant}: {exc.code().name} {exc.details()}")
            time.sleep(0.005)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A server under traffic pulling its rules as a signed bundle from a real nginx, and
    a Prometheus scraping it every 500 ms."""
    tmp = tmp_path_factory.mktemp("scraped")
    rules = copy_rules(tmp)
    flaky = flaky_tenant(rules)
    broken_tenant(rules)
    keys = make_keys(tmp)
    nginx = NginxServer.start(tmp / "nginx", tmp / "www")
    publish(nginx.www, rules, keys.key, "r1")
    address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    # Prometheus first: it takes ~5 s to its first scrape (target updates are throttled),
    # time the server spends starting.
    prom = Prometheus.start(tmp / "prometheus", {JOB: [metrics]}, scrape_interval=SCRAPE)
    # The server's log goes to a file: the flaky tenant logs a warning a call, which
    # would fill a pipe nobody reads and block the server.
    args = ["serve", "--listen", address, "--metrics-listen", metrics]
    args += ["--bundle", nginx.url("b.tar.gz"), "--bundle-public-key", str(keys.pub)]
    args += ["--bundle-poll", "1", "--bundle-jitter", "0", "--bundle-dir", str(tmp / "work")]
    args += flaky
    with (tmp / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [str(RINGFENCE), *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(address, stop, UNEXPECTED), daemon=True)
    try:
        wait_serving(address)
        sender.start()
        yield prom
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(10)
        prom.stop()
        server.terminate()
        server.wait(30)
        nginx.stop()


def test_traffic_got_the_answers_it_expected(scraped: Prometheus) -> None:
    assert UNEXPECTED == []


def answered(prom: Prometheus, expr: str) -> bool:
    result = prom.query(expr)
    return bool(result) and all(math.isfinite(float(r["value"][1])) for r in result)


def test_every_panel_query_returns_data(scraped: Prometheus) -> None:
    pending = dict(queries(dashboard()))
    deadline = time.monotonic() + QUERY_DEADLINE_S
    while pending and time.monotonic() < deadline:
        pending = {name: q for name, q in pending.items() if not answered(scraped, q)}
        if pending:
            time.sleep(0.5)
    assert not pending, f"no data for: {sorted(pending)}\n{scraped.log()}"


def variable_query(name: str, **values: str) -> tuple[str, str]:
    """(label, series selector) of the dashboard's ``label_values(selector, label)``."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    query = variables[name]["query"]["query"]
    m = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
    assert m is not None, query
    selector = m[1]
    for var, value in values.items():
        selector = selector.replace(f"${var}", value)
    assert "$" not in selector, selector
    return m[2], selector


def test_variable_queries_list_the_job_and_tenants(scraped: Prometheus) -> None:
    label, selector = variable_query("job", cluster=".*", namespace=".*")
    assert JOB in scraped.api(f"label/{label}/values", **{"match[]": selector})
    label, selector = variable_query("tenant", cluster=".*", namespace=".*", job=JOB)
    deadline = time.monotonic() + QUERY_DEADLINE_S
    tenants: set[str] = set()
    while time.monotonic() < deadline and not {"demo", "flaky", "broken"} <= tenants:
        tenants = set(scraped.api(f"label/{label}/values", **{"match[]": selector}))
        time.sleep(0.5)
    # The broken tenant has no decision at all, only errors: it is listed all the same.
    assert {"demo", "flaky", "broken"} <= tenants, tenants


def test_alerts_read_series_the_server_exports(scraped: Prometheus) -> None:
    from deploy.test_alerts import alerts, rendered_rules

    deadline = time.monotonic() + QUERY_DEADLINE_S
    exported: set[str] = set()
    used = {
        name
        for rule in alerts(rendered_rules()).values()
        for name in re.findall(r"\bringfence_[a-z_]+", rule["expr"])
    }
    while time.monotonic() < deadline and not used <= exported:
        exported = set(scraped.api("label/__name__/values"))
        time.sleep(0.5)
    assert used <= exported, used - exported
