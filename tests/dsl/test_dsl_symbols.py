"""The symbol index: declarations, uses and scopes from the syntax tree alone."""

from __future__ import annotations

from pathlib import Path

from dsl import ast
from dsl.parser import parse_module
from dsl.symbols import (
    Definition,
    FactUse,
    Reference,
    Scope,
    SymbolKind,
    at,
    file_symbols,
    import_closure,
)

ROOT = Path(__file__).parents[2]


def _symbols(text: str, path: str = "t/p.rf"):  # type: ignore[no-untyped-def]
    return file_symbols(parse_module(text, path), text)


def test_declarations_with_their_name_spans() -> None:
    text = (
        "const  # odd\n   LIMIT = 5\n"
        'list l from "x.csv"\n'
        "aggregate a = count(per list l, over W)\n"
        "rule r {\n    when a > LIMIT\n    then block\n}\n"
    )
    s = _symbols(text)
    by_name = {d.name: d for d in s.definitions}
    assert by_name["LIMIT"].name_span == ast.Span("t/p.rf", 2, 4, 2, 9)
    assert by_name["LIMIT"].kind is SymbolKind.CONST
    assert by_name["l"].name_span == ast.Span("t/p.rf", 3, 6, 3, 7)
    assert by_name["a"].name_span == ast.Span("t/p.rf", 4, 11, 4, 12)
    assert [d.name for d in s.rules] == ["r"]
    refs = [(r.name, r.span.line, r.span.column) for r in s.references]
    # per list NAME and over CONST are uses too
    assert refs == [("l", 4, 30), ("W", 4, 38), ("a", 6, 10), ("LIMIT", 6, 14)]


def test_uses_inside_interpolations_and_facts() -> None:
    text = (
        "rule r {\n    when phone.valid\n    then allow\n"
        '    reason "{hits} for {phone.masked}"\n}\n'
    )
    s = _symbols(text)
    assert [(r.name, r.span.line, r.span.column) for r in s.references] == [("hits", 4, 14)]
    assert [(f.name, f.span.column) for f in s.facts] == [("phone.valid", 16), ("phone.masked", 31)]
    hit = at(s, 4, 15)
    assert isinstance(hit, Reference)
    assert hit.name == "hits"
    assert isinstance(at(s, 2, 18), FactUse)


def test_a_tenant_scope_sees_imported_library_names_first_declaration_wins() -> None:
    lib_text = (ROOT / "rules" / "_shared" / "segments.rf").read_text()
    pol_text = (ROOT / "rules" / "demo" / "policy.rf").read_text()
    files = {
        "_shared/segments.rf": _symbols(lib_text, "_shared/segments.rf"),
        "demo/policy.rf": _symbols(pol_text, "demo/policy.rf"),
    }
    order = import_closure(files, ["demo/policy.rf"])
    assert order == ["_shared/segments.rf", "demo/policy.rf"]
    scope = Scope.of([files[p] for p in order])
    reg = scope.resolve("REGISTRATION")
    assert isinstance(reg, Definition)
    assert reg.span.path == "_shared/segments.rf"
    uses = scope.references(reg)
    assert {r.span.path for r in uses} == {"demo/policy.rf"}
    assert len(uses) == sum(
        line.count("REGISTRATION")
        for line in pol_text.splitlines()
        if not line.lstrip().startswith("#")
    )


def test_import_cycles_are_cut() -> None:
    a = _symbols('import "b.rf"\nconst A = 1\n', "a.rf")
    b = _symbols('import "a.rf"\nconst B = 1\n', "b.rf")
    assert import_closure({"a.rf": a, "b.rf": b}, ["a.rf"]) == ["b.rf", "a.rf"]


def test_second_version_declarations_and_uses() -> None:
    """Named conditions are declarations; `per list NAME` inside a composite key and in a
    function argument uses the list; `default_action = review` is an action, not a name."""
    text = (
        "settings {\n    default_action = review\n}\n"
        "const review = 1\n"
        'list vip from "vip.csv"\n'
        "condition  busy = hits > review\n"
        "aggregate hits = count(per (list vip, app), over 30d)\n"
        "rule r {\n    when busy and age(per list vip) < 1h\n    score 2\n}\n"
    )
    s = _symbols(text)
    by_name = {d.name: d for d in s.definitions}
    assert by_name["busy"].kind is SymbolKind.CONDITION
    assert by_name["busy"].name_span == ast.Span("t/p.rf", 6, 12, 6, 16)
    assert isinstance(by_name["busy"].item, ast.Condition)
    refs = [(r.name, r.span.line, r.span.column) for r in s.references]
    assert refs == [
        ("hits", 6, 19),
        ("review", 6, 26),
        ("vip", 7, 34),
        ("busy", 9, 10),
        ("vip", 9, 32),
    ]
    assert [d.name for d in s.outline()] == ["default_action", "review", "vip", "busy", "hits", "r"]
