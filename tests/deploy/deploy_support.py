"""Shared helpers for the deployment tests: where the chart and tools are, and thin wrappers
over the real Helm library (no template rendering of our own).

Two bindings of Helm's Go library are used, each for what it can do:
- ``helm_sdkpy`` (Helm's own lint action): lint a chart directory with its values.yaml.
  Its lint report keeps severities and paths but loses the error texts.
- ``helm_python`` (``helm-python-sdk``, Helm v4): offline render, schema validation and lint
  with override values, with readable messages.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import helm_python
import helm_sdkpy  # type: ignore[import-untyped]
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "ringfence"
DOCKERFILE = REPO / "Dockerfile"
PRODUCTION_VALUES = Path(__file__).resolve().parent / "values-production.yaml"
RELEASE = "rf"
NAMESPACE = "risk"
# The chart's minimum (Chart.yaml kubeVersion) and the newest schema set we have.
KUBE_VERSIONS = ("1.27.0", "1.37.0")
LINT_ERROR = 3  # Helm's support.ErrorSev


def tool(name: str) -> Path:
    """A binary shipped by a dev dependency: next to this interpreter first, then PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install the dev extra (pip install -e '.[dev]')")
    return Path(found)


def production_values() -> dict[str, Any]:
    data = yaml.safe_load(PRODUCTION_VALUES.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def chart_copy(dest: Path, values: Mapping[str, Any] | None, *, schema: bool = True) -> Path:
    """The chart copied to ``dest`` with ``values`` coalesced into values.yaml by Helm itself
    (for bindings that only lint a directory). ``schema=False`` drops values.schema.json, as
    ``--skip-schema-validation`` would."""
    target = dest / CHART.name
    shutil.copytree(CHART, target)
    if values is not None:
        merged = helm_python.Chart.load(CHART).merge_values(dict(values))
        (target / "values.yaml").write_text(yaml.safe_dump(merged), encoding="utf-8")
    if not schema:
        (target / "values.schema.json").unlink()
    return target


def sdkpy_lint(chart_dir: Path) -> list[dict[str, Any]]:
    """helm_sdkpy's lint messages: [{"Severity": int, "Path": str, "Err": ...}]."""
    report = asyncio.run(
        helm_sdkpy.Lint(helm_sdkpy.Configuration(namespace=NAMESPACE)).run(str(chart_dir))
    )
    messages: list[dict[str, Any]] = report.get("Messages") or []
    return messages


def render(values: Mapping[str, Any] | None = None, chart: Path = CHART) -> dict[str, str]:
    """Template path -> rendered text, by Helm's engine (``helm template``)."""
    return helm_python.Chart.load(chart).render(
        dict(values) if values is not None else None,
        name=RELEASE,
        namespace=NAMESPACE,
        is_install=True,
    )


def manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a nested manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


SERVICE = "ringfence.v1.DecisionService"
START_TIMEOUT_S = 60.0


def log_tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_serving(address: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll the health service of a process we started (``what``: "server", "container")
    until SERVING, failing with its log when it exits or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{what} exited with {proc.returncode}:\n{log_tail(log)}")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            except grpc.RpcError as exc:
                last = exc.code().name
            time.sleep(0.2)
    pytest.fail(f"{address} not SERVING after {START_TIMEOUT_S}s (last: {last}):\n{log_tail(log)}")
