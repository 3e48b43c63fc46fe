"""Completion, hover, definitions, references, outline and rename through `ringfence lsp`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lsp_support import change, diagnostics, errors, open_file, position_of, uri
from lsprotocol import types
from pytest_lsp import LanguageClient

from dsl import reference, schema


def _doc(u: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(u)


async def _complete(
    client: LanguageClient, rules: Path, text: str, at: str
) -> dict[str, types.CompletionItem]:
    """Completion with ``text`` as demo/extra.rf and the cursor after ``at``."""
    path = rules / "demo" / "extra.rf"
    u = await open_file(client, path, text)
    pos = position_of(text, at, offset=len(at))
    result = await client.text_document_completion_async(types.CompletionParams(_doc(u), pos))
    assert isinstance(result, types.CompletionList)
    return {i.label: i for i in result.items}


RULE_HEAD = "rule extra {\n    when "


async def test_completion_of_facts_with_types_and_docs(
    reader: LanguageClient, shared_rules: Path
) -> None:
    items = await _complete(reader, shared_rules, RULE_HEAD + "phone.", "phone.")
    assert set(schema.PHONE_FIELDS) | set(schema.PHONE_METHODS) <= set(items)
    kind = items["segment_kind"]
    assert kind.detail == "string"
    assert isinstance(kind.documentation, types.MarkupContent)
    assert "mvno" in kind.documentation.value
    items = await _complete(reader, shared_rules, RULE_HEAD + "event.", "event.")
    assert set(schema.EVENT_FIELDS) <= set(items)
    assert items["local_hour"].detail == "int"
    items = await _complete(reader, shared_rules, RULE_HEAD + "ip.", "ip.")
    assert set(items) == set(schema.IP_FIELDS)
    assert items["asn"].detail == "int"
    province = items["province"]
    assert isinstance(province.documentation, types.MarkupContent)
    assert "CN-JS" in province.documentation.value
    items = await _complete(reader, shared_rules, RULE_HEAD + "phone.", "phone.")
    assert {"province", "city", "province_name", "city_name"} <= set(items)


async def test_completion_of_names_in_scope_including_imports(
    reader: LanguageClient, shared_rules: Path
) -> None:
    items = await _complete(reader, shared_rules, RULE_HEAD + "p", RULE_HEAD)
    # consts from the tenant and from the imported library, lists, aggregates
    for name in (
        "PRIVACY_HOURLY_LIMIT",
        "REGISTRATION",
        "BLACK_CARD_KINDS",
        "privacy_numbers",
        "code_platform_numbers",
        "privacy_hits_1h",
        "phone",
        "event",
        "sustained",
    ):
        assert name in items, name
    assert items["REGISTRATION"].kind == types.CompletionItemKind.Constant
    assert (
        items["privacy_hits_1h"].detail
        == "aggregate privacy_hits_1h = count(per list privacy_numbers, over 1h)"
    )


@pytest.mark.parametrize(
    ("text", "at", "expected"),
    [
        ("rule x {\n    when true\n    then ", "then ", set(schema.ACTIONS)),
        ("rule x {\n    when true\n    on_error ", "on_error ", set(schema.ON_ERROR)),
        ("aggregate a = count(per ", "per ", set(schema.KEY_KINDS)),
        (
            "aggregate a = count(per list ",
            "per list ",
            {"privacy_numbers", "code_platform_numbers"},
        ),
        ("aggregate a = count(per number, over ", "over ", {"1h", "24h", "today"}),
        ("aggregate a = ", "= ", set(schema.AGG_KINDS)),
        ("rule x {\n    when codes_today > 1\n    ", "    ", set(reference.keywords().clauses)),
        ("const A = 1\n", "\n", set(reference.keywords().items)),
        ("aggregate a = count(per number, over 15", "15", {"15s", "15m", "15h", "15d", "15w"}),
        ("rule x {\n    when privacy_numbers.", "privacy_numbers.", {"label"}),
        ("rule x {\n    when privacy_hits_1h.", "privacy_hits_1h.", {"ago"}),
        ("settings {\n    ", "{\n    ", set(schema.SETTINGS)),
        # The language's second version.
        ("settings {\n    default_action = ", "= ", set(schema.ACTIONS)),
        ('settings {\n    default_action = "', '"', set(schema.ACTIONS)),
        ("aggregate a = count(per (", "(per (", set(schema.KEY_KINDS)),
        ("aggregate a = count(per (number, ", "number, ", set(schema.KEY_KINDS)),
        (
            "aggregate a = count(per (app, list ",
            "list ",
            {"privacy_numbers", "code_platform_numbers"},
        ),
        ("aggregate a = count(per number, per ", "per number, per ", set(schema.KEY_KINDS)),
        ("aggregate a = count(per ", "per ", {"ip/24", "ip/64"}),
        ("aggregate a = distinct(ip.", "ip.", {"city", "province", "country"}),
        ("rule x {\n    when age(", "age(", {"per number", "per device", "per ip", "per app"}),
        ("rule x {\n    when event.app_id.", "app_id.", {"matches", "contains"}),
        ("rule x {\n    when ", "when ", {"age", "sustained", "phone", "ip"}),
        ("rule x {\n    when true\n    ", "true\n    ", {"priority", "score", "then"}),
        ("const A = 1\n", "\n", {"condition"}),
    ],
)
async def test_completion_in_context(
    reader: LanguageClient, shared_rules: Path, text: str, at: str, expected: set[str]
) -> None:
    items = await _complete(reader, shared_rules, text, at)
    assert expected <= set(items), sorted(items)


async def test_completion_of_age_keys_is_only_what_age_keeps(
    reader: LanguageClient, shared_rules: Path
) -> None:
    items = await _complete(reader, shared_rules, RULE_HEAD + "age(per ", "age(per ")
    assert set(items) == {k.value for k in schema.AGE_KEYS}
    assert items["number"].kind == types.CompletionItemKind.Keyword
    items = await _complete(reader, shared_rules, RULE_HEAD + "a", RULE_HEAD)
    assert (
        items["age"].detail == 'age(per number | device | ip | app | attribute "NAME") -> duration'
    )


async def test_completion_of_list_label_names(reader: LanguageClient, shared_rules: Path) -> None:
    text = RULE_HEAD + 'true\n    then allow\n    reason "{privacy_numbers.label("'
    items = await _complete(reader, shared_rules, text, 'label("')
    assert set(items) == {"risk", "source", "added", "expires"}


async def _hover(client: LanguageClient, u: str, text: str, needle: str, nth: int = 0) -> str:
    pos = position_of(text, needle, nth, offset=1)
    h = await client.text_document_hover_async(types.HoverParams(_doc(u), pos))
    assert h is not None
    assert isinstance(h.contents, types.MarkupContent)
    return h.contents.value


async def test_hover(reader: LanguageClient, shared_rules: Path) -> None:
    path = shared_rules / "demo" / "policy.rf"
    text = path.read_text()
    u = await open_file(reader, path)
    fact = await _hover(reader, u, text, "segment_kind in BLACK")
    assert "phone.segment_kind: string" in fact
    assert "mvno" in fact
    agg = await _hover(reader, u, text, "privacy_hits_1h <=")
    assert "aggregate privacy_hits_1h = count(per list privacy_numbers, over 1h)" in agg
    assert "window: 1h" in agg
    lst = await _hover(reader, u, text, "privacy_numbers and privacy_hits_1h <=")
    assert "entries: 2" in lst
    assert "label columns: risk, source, added, expires" in lst
    assert "file: demo/lists/privacy_numbers.csv" in lst
    const = await _hover(reader, u, text, "RUN_BLOCK - 1")
    assert "const RUN_BLOCK = 20" in const
    imported = await _hover(reader, u, text, "REGISTRATION and segment_run_today between")
    assert 'const REGISTRATION = "register"' in imported
    assert "_shared/segments.rf" in imported


async def test_hover_shows_a_computed_const_value(
    reader: LanguageClient, shared_rules: Path
) -> None:
    text = "const A = 2\nconst B = A * 30m + 1h\nconst C = A * (3 + 4)\n"
    u = await open_file(reader, shared_rules / "demo" / "extra.rf", text)
    assert "value: `2h`" in await _hover(reader, u, text, "B =")
    assert "value: `14`" in await _hover(reader, u, text, "C =")


async def test_hover_on_second_version_declarations(
    reader: LanguageClient, shared_rules: Path
) -> None:
    text = (
        "const RATE = 1 / 4\nconst TRIPLE = RATE * 3\nconst EXACT = 0.5\n"
        "condition busy = phone.valid and per_app > 2\n"
        "aggregate per_app = count(per (number, app), over 30d)\n"
        "rule extra {\n    when busy and age(per device) < 1h\n    score 5\n}\n"
    )
    u = await open_file(reader, shared_rules / "demo" / "extra.rf", text)
    # Decimals are millionths in the checker; hovers show them as written by fmt_decimal.
    assert "value: `0.25`" in await _hover(reader, u, text, "RATE =")
    assert "value: `0.75`" in await _hover(reader, u, text, "TRIPLE =")
    exact = await _hover(reader, u, text, "EXACT =")
    assert "const EXACT = 0.5" in exact
    assert "value:" not in exact  # nothing to add to the literal
    busy = await _hover(reader, u, text, "busy and age")
    assert "condition busy = phone.valid and per_app > 2" in busy
    assert "named condition" in busy
    agg = await _hover(reader, u, text, "per_app > 2")
    assert "aggregate per_app = count(per (number, app), over 30d)" in agg
    age = await _hover(reader, u, text, "age(per device)")
    assert 'age(per number | device | ip | app | attribute "NAME") -> duration' in age
    assert "first saw" in age
    assert "added up" in await _hover(reader, u, text, "score 5")


async def test_definition_across_files(reader: LanguageClient, shared_rules: Path) -> None:
    path = shared_rules / "demo" / "policy.rf"
    text = path.read_text()
    u = await open_file(reader, path)
    pos = position_of(text, "REGISTRATION and segment_run_today between", offset=2)
    locs = await reader.text_document_definition_async(types.DefinitionParams(_doc(u), pos))
    assert isinstance(locs, list)
    (loc,) = locs
    lib = shared_rules / "_shared" / "segments.rf"
    assert loc.uri == uri(lib)
    assert loc.range.start == position_of(lib.read_text(), "REGISTRATION")
    # the import line leads to the library file
    pos = position_of(text, '"_shared/segments.rf"', offset=3)
    locs = await reader.text_document_definition_async(types.DefinitionParams(_doc(u), pos))
    assert isinstance(locs, list)
    assert locs[0].uri == uri(lib)


async def test_references_across_files(reader: LanguageClient, shared_rules: Path) -> None:
    lib = shared_rules / "_shared" / "segments.rf"
    lib_text = lib.read_text()
    u = await open_file(reader, lib)
    pos = position_of(lib_text, "SMS_CODE", offset=1)
    refs = await reader.text_document_references_async(
        types.ReferenceParams(
            text_document=_doc(u),
            position=pos,
            context=types.ReferenceContext(include_declaration=True),
        )
    )
    assert refs is not None
    policy = (shared_rules / "demo" / "policy.rf").read_text()
    assert sorted((r.uri.rsplit("/", 2)[-2], r.range.start.line) for r in refs) == sorted(
        [("_shared", position_of(lib_text, "SMS_CODE").line)]
        + [
            ("demo", i)
            for i, line in enumerate(policy.splitlines())
            if "SMS_CODE" in line and not line.lstrip().startswith("#")
        ]
    )


async def test_document_symbols(reader: LanguageClient, shared_rules: Path) -> None:
    path = shared_rules / "demo" / "policy.rf"
    u = await open_file(reader, path)
    syms = await reader.text_document_document_symbol_async(types.DocumentSymbolParams(_doc(u)))
    assert syms is not None
    names = {(s.name, s.kind) for s in syms if isinstance(s, types.DocumentSymbol)}
    assert ("privacy_numbers", types.SymbolKind.Array) in names
    assert ("privacy_hits_1h", types.SymbolKind.Variable) in names
    assert ("RUN_BLOCK", types.SymbolKind.Constant) in names
    assert ("black_card_segment", types.SymbolKind.Event) in names
    assert ("timezone", types.SymbolKind.Property) in names


async def test_rename_a_library_const_across_the_tenant(
    client: LanguageClient, rules: Path
) -> None:
    lib = rules / "_shared" / "segments.rf"
    policy = rules / "demo" / "policy.rf"
    u = await open_file(client, policy)
    text = policy.read_text()
    pos = position_of(text, "SMS_CODE and codes_today", offset=1)
    prep = await client.text_document_prepare_rename_async(types.PrepareRenameParams(_doc(u), pos))
    assert isinstance(prep, types.PrepareRenamePlaceholder)
    assert prep.placeholder == "SMS_CODE"
    edit = await client.text_document_rename_async(types.RenameParams(_doc(u), pos, "CODE_SCENE"))
    assert edit is not None
    assert edit.changes is not None
    assert set(edit.changes) == {uri(lib), uri(policy)}
    # Apply the edits and the tenant still checks.
    for target, edits in edit.changes.items():
        path = lib if target == uri(lib) else policy
        lines = path.read_text().split("\n")
        for e in sorted(
            edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True
        ):
            ln = lines[e.range.start.line]
            lines[e.range.start.line] = (
                ln[: e.range.start.character] + e.new_text + ln[e.range.end.character :]
            )
        path.write_text("\n".join(lines))
    code = re.sub(r"#[^\n]*", "", policy.read_text() + lib.read_text())
    assert "SMS_CODE" not in code
    assert "CODE_SCENE" in code
    change(client, u, policy.read_text(), 2)
    await diagnostics(client, u, lambda d: not errors(d))


async def test_rename_refuses_a_clash_or_a_keyword(
    reader: LanguageClient, shared_rules: Path
) -> None:
    policy = shared_rules / "demo" / "policy.rf"
    u = await open_file(reader, policy)
    pos = position_of(policy.read_text(), "RUN_BLOCK", offset=1)
    for bad in ("RUN_REVIEW", "when", "phone", "9x"):
        with pytest.raises(Exception, match=bad):
            await reader.text_document_rename_async(types.RenameParams(_doc(u), pos, bad))


async def test_rename_and_references_of_a_condition_and_a_list_in_keys(
    reader: LanguageClient, shared_rules: Path
) -> None:
    text = (
        "condition busy = phone.valid\n"
        "aggregate hits = count(per (list privacy_numbers, app), over 1h)\n"
        "rule extra {\n    when busy and hits > 1 and not busy\n    then review\n}\n"
    )
    u = await open_file(reader, shared_rules / "demo" / "extra.rf", text)
    pos = position_of(text, "busy and", offset=1)
    edit = await reader.text_document_rename_async(types.RenameParams(_doc(u), pos, "crowded"))
    assert edit is not None
    assert edit.changes is not None
    assert sorted((e.range.start.line, e.range.start.character) for e in edit.changes[u]) == [
        (0, 10),
        (3, 9),
        (3, 35),
    ]
    # `per (list NAME, ...)` is a use of the list.
    pos = position_of(text, "privacy_numbers, app", offset=1)
    refs = await reader.text_document_references_async(
        types.ReferenceParams(
            text_document=_doc(u),
            position=pos,
            context=types.ReferenceContext(include_declaration=False),
        )
    )
    assert refs is not None
    assert (u, 1) in {(r.uri, r.range.start.line) for r in refs}


async def test_numeric_aggregates_complete_and_hover(
    reader: LanguageClient, shared_rules: Path
) -> None:
    """event.number() and sum/avg/min/max: completed after `event.` and at a call, with
    their signatures and docs on hover; an aggregate hover shows its declaration."""
    items = await _complete(reader, shared_rules, RULE_HEAD + "event.", "event.")
    assert items["number"].kind == types.CompletionItemKind.Method
    assert items["number"].detail == 'number("key") -> decimal'
    text = (
        'aggregate spent = sum(event.number("amount"), per attribute "user_id", over 1d)\n'
        "aggregate low = min(event.local_hour, per number, over 1h)\n"
        'rule extra {\n    when spent > 10.5 and event.number("amount") > 1\n    then review\n}\n'
    )
    u = await open_file(reader, shared_rules / "demo" / "numeric.rf", text)
    assert "sum(VALUE, per KEY, over WINDOW)" in await _hover(reader, u, text, "sum(")
    assert "unknown for none" in await _hover(reader, u, text, "min(")
    assert "rounded half to even" in await _hover(reader, u, text, "number(")
    spent = await _hover(reader, u, text, "spent > 10.5")
    assert 'aggregate spent = sum(event.number("amount"), per attribute "user_id"' in spent
