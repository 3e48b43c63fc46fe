"""The language tables tools read: complete, and taken from the grammar and the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl import check_policy, reference, schema

GOLDEN = Path(__file__).parent / "golden" / "diagnostics"


def test_keywords_come_from_the_grammar() -> None:
    kw = reference.keywords()
    assert set(kw.items) == {
        "settings",
        "import",
        "const",
        "condition",
        "list",
        "aggregate",
        "rule",
        "shadow",
    }
    assert set(kw.clauses) == {
        "when",
        "then",
        "risk",
        "tags",
        "reason",
        "on_error",
        "priority",
        "score",
    }
    assert set(kw.operators) == {"and", "or", "not", "in", "between"}
    assert {"from", "per", "over", "where", "override"} <= set(kw.other)


def test_every_keyword_has_a_doc() -> None:
    assert [k for k in reference.keywords().all if not reference.KEYWORD_DOCS.get(k)] == []


@pytest.mark.parametrize(
    "table",
    [
        reference.facts,
        reference.string_helpers,
        reference.phone_helpers,
        reference.aggregate_kinds,
        reference.key_kinds,
        reference.actions,
        reference.on_error_values,
        reference.settings,
        reference.functions,
        reference.age_keys,
    ],
    ids=lambda f: f.__name__,
)
def test_every_schema_name_has_a_doc(table: object) -> None:
    """A name added to dsl/schema.py needs a line of doc for completion and hover."""
    entries = table()  # type: ignore[operator]
    assert entries
    assert [e.name for e in entries if not e.doc] == []


def test_functions_and_kinds_follow_the_schema() -> None:
    assert [f.name for f in reference.functions()] == list(schema.FUNCTIONS)
    assert reference.functions() == reference.FUNCTIONS
    assert {e.name for e in reference.age_keys()} == {k.value for k in schema.AGE_KEYS}
    # age() keeps first sightings as an aggregate of its own; authors never write that kind.
    assert [k.name for k in reference.aggregate_kinds()] == [
        "count",
        "distinct",
        "run",
        "sum",
        "avg",
        "min",
        "max",
    ]


def test_facts_follow_the_schema() -> None:
    names = {f.name for f in reference.facts()}
    assert {f"phone.{n}" for n in schema.PHONE_FIELDS} <= names
    assert {f"event.{n}" for n in schema.EVENT_FIELDS} <= names
    assert reference.fact("phone.country_code") == reference.Entry(
        "phone.country_code",
        "int",
        reference.fact("phone.country_code").doc,  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    "case",
    sorted(p for p in GOLDEN.glob("*.rf") if "did you mean" in p.with_suffix(".txt").read_text()),
    ids=lambda p: p.stem,
)
def test_every_did_you_mean_carries_a_suggestion(case: Path) -> None:
    """Editors build quick fixes from Diagnostic.suggestion, never from the message."""
    diags = check_policy({f"demo/{case.name}": case.read_text()})
    hinted = [d for d in diags if "did you mean" in d.message]
    assert hinted
    for d in hinted:
        assert d.suggestion is not None, d.message
        assert d.message.endswith(f"did you mean '{d.suggestion.replacement}'?")
        line = case.read_text().splitlines()[d.line - 1]
        assert d.suggestion.original in line[d.column - 1 : d.end_column - 1]
