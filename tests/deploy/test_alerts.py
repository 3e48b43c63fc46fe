"""The chart's PrometheusRule, as Helm renders it, checked and unit-tested by Prometheus's
own promtool: each alert fires when it should and stays quiet when it should not, and
links to a runbook that exists in docs/operations.md."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.deploy_support import REPO, manifests, one, render
from deploy.prometheus_support import binary

ALERT_TESTS = Path(__file__).resolve().parent / "alerts"
OPERATIONS = REPO / "docs" / "operations.md"
RULES_FILE = "ringfence.rules.yaml"


def rendered_rules(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rule groups as promtool reads them (defaults rendered once per session)."""
    if values is None:
        return copy.deepcopy(_default_rules())
    docs = manifests(render({"prometheusRule": {"enabled": True}, **values}))
    spec: dict[str, Any] = one(docs, "PrometheusRule")["spec"]
    return {"groups": spec["groups"]}


@functools.cache
def _default_rules() -> dict[str, Any]:
    return rendered_rules({})


def alerts(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered rules beside copies of the promtool test files that name them."""
    tmp = tmp_path_factory.mktemp("alerts")
    (tmp / RULES_FILE).write_text(yaml.safe_dump(rendered_rules()), encoding="utf-8")
    for test in ALERT_TESTS.glob("*_test.yaml"):
        shutil.copy(test, tmp / test.name)
    return tmp


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("promtool")), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_promtool_checks_the_rules(rules_dir: Path) -> None:
    out = promtool("check", "rules", RULES_FILE, cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts(rendered_rules()))} rules found" in out.stdout


def test_promtool_unit_tests_pass(rules_dir: Path) -> None:
    tests = sorted(p.name for p in rules_dir.glob("*_test.yaml"))
    assert tests
    out = promtool("test", "rules", *tests, cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(tests)


def test_promtool_unit_tests_can_fail(rules_dir: Path, tmp_path: Path) -> None:
    """A rule file that never fires must fail the same tests."""
    quiet = rendered_rules()
    for rule in quiet["groups"][0]["rules"]:
        rule["expr"] = "vector(1) == 0"
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(quiet), encoding="utf-8")
    for test in ALERT_TESTS.glob("*_test.yaml"):
        shutil.copy(test, tmp_path / test.name)
    tests = sorted(p.name for p in tmp_path.glob("*_test.yaml"))
    out = promtool("test", "rules", *tests, cwd=tmp_path)
    assert out.returncode != 0
    report = out.stdout + out.stderr
    missed = [a for a in alerts(quiet) if f"alertname: {a}," not in report]
    assert not missed, report


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in ALERT_TESTS.glob("*_test.yaml"):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = set(alerts(rendered_rules()))
    assert names == fires, names ^ fires
    assert names == quiet, names ^ quiet


def anchors(markdown: str) -> dict[str, str]:
    """GitHub's heading anchors -> the section's text (up to the next heading)."""
    out: dict[str, str] = {}
    for m in re.finditer(r"^#+ (.+)\n((?:(?!#+ ).*\n?)*)", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        out[slug] = m.group(2)
    return out


def test_every_alert_links_to_its_runbook() -> None:
    sections = anchors(OPERATIONS.read_text(encoding="utf-8"))
    base = "https://example.invalid/ringfence/blob/main/docs/operations.md#"
    for name, rule in alerts(rendered_rules()).items():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(base), url
        anchor = url.removeprefix(base)
        assert anchor in sections, f"{name}: no heading for #{anchor} in docs/operations.md"
        assert name in sections[anchor], f"the runbook #{anchor} does not name {name}"
        assert rule["labels"]["severity"] in ("page", "ticket")


def test_docs_list_every_alert() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    for name in alerts(rendered_rules()):
        assert f"`{name}`" in text, name


def test_values_reach_the_rules() -> None:
    rules = rendered_rules(
        {
            "fullnameOverride": "risk-engine",
            "prometheusRule": {
                "enabled": True,
                "runbookBaseUrl": "https://wiki.internal/ringfence",
                "latencyP99Seconds": 0.02,
                "labels": {"release": "kube-prometheus-stack"},
            },
        }
    )
    latency = alerts(rules)["RingfenceLatencyHigh"]
    assert '{job="risk-engine",namespace="risk",code="OK"}' in latency["expr"]
    assert "> 0.02" in latency["expr"]
    assert latency["annotations"]["runbook_url"] == "https://wiki.internal/ringfence#latency-up"
    custom = rendered_rules({"prometheusRule": {"enabled": True, "selector": 'cluster="eu1"'}})
    for name, rule in alerts(custom).items():
        assert ('cluster="eu1"' in rule["expr"]) == (name != "RingfenceNotReady"), name
    docs = manifests(render({"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}))
    assert one(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "kps"


def test_off_by_default() -> None:
    docs = manifests(render({}))
    assert not [d for d in docs if d["kind"] == "PrometheusRule"]
