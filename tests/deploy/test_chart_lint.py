"""The chart passes Helm's own lint, with its defaults and with production-like values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
from deploy.deploy_support import CHART, LINT_ERROR, chart_copy, production_values, sdkpy_lint

CASES = [
    pytest.param(None, id="defaults"),
    pytest.param("production", id="production"),
]


def _values(which: str | None) -> dict[str, Any] | None:
    return production_values() if which == "production" else None


@pytest.mark.parametrize("which", CASES)
def test_helm_sdkpy_lint_has_no_errors(tmp_path: Path, which: str | None) -> None:
    chart = chart_copy(tmp_path, _values(which))
    errors = [m for m in sdkpy_lint(chart) if m["Severity"] >= LINT_ERROR]
    # helm_sdkpy drops the message texts; Helm's lint through helm_python names them.
    detail = helm_python.lint(chart)["errors"] if errors else []
    assert errors == [], detail


@pytest.mark.parametrize("which", CASES)
def test_strict_lint_has_no_warnings(which: str | None) -> None:
    report = helm_python.lint(CHART, _values(which), strict=True, namespace="risk")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems
    assert report["errors"] == []


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    # The lint above must be able to fail: break one template and it reports an error.
    chart = chart_copy(tmp_path, None)
    (chart / "templates" / "broken.yaml").write_text("{{ .Values.nope.deeper }}\n")
    errors = [m for m in sdkpy_lint(chart) if m["Severity"] >= LINT_ERROR]
    assert [m["Path"] for m in errors] == ["templates/"]
