"""Golden files: rendered diagnostics for bad inputs, generated Python for good ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsl_helpers import GOLDEN, ROOT, check_golden

from dsl import check_policy, generated_python, render_all
from dsl.diagnostics import Severity

DIAG_CASES = sorted((GOLDEN / "diagnostics").glob("*.rf"))
CODEGEN_CASES = sorted((GOLDEN / "codegen").glob("*.rf"))


def test_there_are_enough_diagnostic_cases() -> None:
    assert len(DIAG_CASES) >= 80


@pytest.mark.parametrize("case", DIAG_CASES, ids=lambda p: p.stem)
def test_diagnostics(case: Path) -> None:
    text = case.read_text(encoding="utf-8")
    path = f"demo/{case.name}"
    diags = check_policy({path: text}, tenant="demo")
    # Every golden input is bad: at least one error (warn_*: only warnings), never an exception.
    if case.stem.startswith("warn_"):
        assert diags
        assert all(d.severity is Severity.WARNING for d in diags)
    else:
        assert any(d.severity is Severity.ERROR for d in diags)
    check_golden(case.with_suffix(".txt"), render_all(diags, {path: text}) + "\n")


@pytest.mark.parametrize("case", CODEGEN_CASES, ids=lambda p: p.stem)
def test_generated_source(case: Path) -> None:
    text = case.read_text(encoding="utf-8")
    source = generated_python({f"golden/{case.name}": text}, tenant="golden")
    check_golden(case.with_suffix(".py.txt"), source)


def _demo() -> tuple[dict[str, str], dict[str, str]]:
    sources = {"demo/policy.rf": (ROOT / "rules/demo/policy.rf").read_text(encoding="utf-8")}
    library = {
        f"_shared/{p.name}": p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "rules/_shared").glob("*.rf"))
    }
    return sources, library


def test_demo_generated_source() -> None:
    sources, library = _demo()
    source = generated_python(sources, library=library, tenant="demo")
    check_golden(GOLDEN / "codegen" / "demo_policy.py.txt", source)


def test_generation_is_deterministic() -> None:
    sources, library = _demo()
    generated = [generated_python(sources, library=library, tenant="demo") for _ in range(3)]
    assert generated[0] == generated[1] == generated[2]


def test_an_artifact_survives_pickling() -> None:
    """Workers hand artifacts to the server pickled (as one marshal blob of tuples)."""
    import pickle

    from dsl import build_policy

    sources, library = _demo()
    artifact = build_policy(sources, library=library, tenant="demo")
    again = pickle.loads(pickle.dumps(artifact))
    assert again == artifact
    assert again.rules[0].span == artifact.rules[0].span


def test_every_aggregate_field_survives_pickling() -> None:
    """Each spec field crosses the wire, the numeric ones too (a field left out would
    reach the state as its default)."""
    import pickle

    from dsl import build_policy

    text = (
        'aggregate spent = avg(event.number("amount"), per attribute "user_id", over 1h)\n'
        "aggregate hours = max(event.local_hour, per (number, app), over today)\n"
        "rule r { when spent > 1.5 or hours > 3 then review }\n"
    )
    artifact = build_policy({"t/policy.rf": text}, tenant="t")
    again = pickle.loads(pickle.dumps(artifact))
    assert again.aggregates == artifact.aggregates
    assert [a.decimal for a in again.aggregates] == [True, False]
