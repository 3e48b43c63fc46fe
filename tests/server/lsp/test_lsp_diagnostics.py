"""Diagnostics from `ringfence lsp`: on open and change, exact ranges, the checker's text,
across files, lists and tenant.toml."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsp_support import change, diagnostics, errors, messages, open_file, position_of, uri
from lsprotocol import types
from pytest_lsp import LanguageClient


async def test_shipped_policy_has_no_errors(client: LanguageClient, rules: Path) -> None:
    u = await open_file(client, rules / "demo" / "policy.rf")
    diags = await diagnostics(client, u, lambda d: True)
    assert errors(diags) == []


async def test_broken_then_fixed(client: LanguageClient, rules: Path) -> None:
    path = rules / "demo" / "policy.rf"
    good = path.read_text()
    u = await open_file(client, path)
    await diagnostics(client, u, lambda d: not errors(d))
    broken = good.replace(
        "phone.segment_kind in BLACK_CARD_KINDS", "phone.segment_knd in BLACK_CARD_KINDS"
    )
    change(client, u, broken, 2)
    diags = await diagnostics(client, u, lambda d: bool(errors(d)))
    (err,) = errors(diags)
    assert err.message == "unknown field 'phone.segment_knd'; did you mean 'segment_kind'?"
    line = broken.splitlines().index(next(x for x in broken.splitlines() if "segment_knd" in x))
    col = broken.splitlines()[line].index("phone.segment_knd")
    assert err.range == types.Range(
        types.Position(line, col), types.Position(line, col + len("phone.segment_knd"))
    )
    assert err.source == "ringfence"
    change(client, u, good, 3)
    await diagnostics(client, u, lambda d: not errors(d))


async def test_same_text_and_place_as_ringfence_check(client: LanguageClient, rules: Path) -> None:
    from lsp_support import RINGFENCE

    path = rules / "demo" / "policy.rf"
    broken = path.read_text().replace(
        'then review\n    risk 3\n    tags "black', 'then reviw\n    risk 3\n    tags "black'
    )
    path.write_text(broken)
    u = await open_file(client, path)
    (err,) = errors(await diagnostics(client, u, lambda d: bool(errors(d))))
    proc = await asyncio.create_subprocess_exec(
        RINGFENCE, "check", str(rules), stdout=asyncio.subprocess.PIPE
    )
    out = (await proc.communicate())[0].decode()
    line, col = err.range.start.line + 1, err.range.start.character + 1
    assert f"demo/policy.rf:{line}:{col}: error: {err.message}" in out
    assert "did you mean 'review'" in err.message


async def test_library_change_rechecks_importing_tenant(
    client: LanguageClient, rules: Path
) -> None:
    lib = rules / "_shared" / "segments.rf"
    policy_uri = uri(rules / "demo" / "policy.rf")
    await open_file(client, rules / "demo" / "policy.rf")
    await diagnostics(client, policy_uri, lambda d: not errors(d))
    lib_uri = await open_file(client, lib)
    change(client, lib_uri, lib.read_text().replace("const SMS_CODE", "const SMS_CODES"), 2)
    diags = await diagnostics(client, policy_uri, lambda d: bool(errors(d)))
    assert any(m.startswith("unknown name 'SMS_CODE'") for m in messages(diags))
    # The library's own unused-name warning is never reported (library symbols are shared).
    change(client, lib_uri, lib.read_text(), 3)
    await diagnostics(client, policy_uri, lambda d: not errors(d))


async def test_library_error_shows_in_the_library_file(client: LanguageClient, rules: Path) -> None:
    lib = rules / "_shared" / "segments.rf"
    lib_uri = await open_file(client, lib, lib.read_text() + "\nconst X = 1 +\n")
    diags = await diagnostics(client, lib_uri, lambda d: bool(errors(d)))
    assert messages(errors(diags))[0].startswith("unexpected end of file")


async def test_tenant_toml_problems(client: LanguageClient, rules: Path) -> None:
    toml = rules / "demo" / "tenant.toml"
    toml.write_text('fail_mode = "maybe"\n')
    u = await open_file(client, rules / "demo" / "policy.rf")
    await diagnostics(client, u, lambda d: not errors(d))
    t = await open_file(client, toml, 'fail_mode = "open"\ntimezone = \n')
    (err,) = await diagnostics(client, uri(toml), lambda d: bool(d) and "Invalid" in d[0].message)
    assert err.range.start.line == 1
    change(client, t, 'fail_mode = "maybe"\n', 2)
    (err,) = await diagnostics(client, uri(toml), lambda d: bool(d) and "fail_mode" in d[0].message)
    assert err.message == 'fail_mode must be "open" or "closed", not \'maybe\''
    change(client, t, 'fail_mode = "closed"\n', 3)
    await diagnostics(client, uri(toml), lambda d: not d)


async def test_list_file_problems(client: LanguageClient, rules: Path) -> None:
    csv = rules / "demo" / "lists" / "privacy_numbers.csv"
    csv.write_text(csv.read_text() + "not-a-number,risk2,x,2026-01-05,2099-12-31\n")
    bad_line = csv.read_text().count("\n") - 1
    path = rules / "demo" / "policy.rf"
    u = await open_file(client, path)
    (err,) = await diagnostics(client, uri(csv), lambda d: bool(d))
    assert err.range.start.line == bad_line
    # A declaration naming a missing file is an error at the declaration.
    text = path.read_text().replace("lists/privacy_numbers.csv", "lists/nope.csv")
    change(client, u, text, 2)
    diags = await diagnostics(client, u, lambda d: bool(errors(d)))
    assert messages(errors(diags)) == ["list file 'lists/nope.csv' not found"]
    assert errors(diags)[0].range.start.line == text.splitlines().index(
        'list privacy_numbers from "lists/nope.csv"'
    )


async def test_a_list_outside_the_rules_folder_is_refused_and_not_shown(
    client: LanguageClient, rules: Path
) -> None:
    """An attacker's list path must not make the editor read or describe that file."""
    secret = rules.parent / "secret.csv"
    secret.write_text("entry,note\n+8613800000000,classified\n")
    path = rules / "demo" / "policy.rf"
    text = path.read_text().replace("lists/privacy_numbers.csv", "../../secret.csv")
    u = await open_file(client, path, text)
    diags = await diagnostics(client, u, lambda d: bool(errors(d)))
    # The loader's own words (server/bundle/load.py), as `ringfence check` prints them.
    assert messages(errors(diags)) == [
        "list path '../../secret.csv' leaves the tenant folder: a list comes from the"
        " tenant's own folder or from _shared/"
    ]
    from lsp_support import position_of

    hover = await client.text_document_hover_async(
        types.HoverParams(
            types.TextDocumentIdentifier(u), position_of(text, "privacy_numbers from", offset=1)
        )
    )
    assert hover is not None
    assert isinstance(hover.contents, types.MarkupContent)
    assert "leaves the tenant folder" in hover.contents.value
    assert "note" not in hover.contents.value
    assert "entries" not in hover.contents.value


async def test_a_huge_line_does_not_stall_completion(client: LanguageClient, rules: Path) -> None:
    text = "rule x {\n    when " + "a" * 300_000
    u = await open_file(client, rules / "demo" / "long.rf", text)
    result = await asyncio.wait_for(
        client.text_document_completion_async(
            types.CompletionParams(types.TextDocumentIdentifier(u), types.Position(1, 9 + 300_000))
        ),
        20,
    )
    assert result is not None


async def test_ranges_are_in_the_clients_utf16_units(client: LanguageClient, rules: Path) -> None:
    """Columns are code points in the checker and UTF-16 units in LSP: an emoji (two units)
    before the error moves its range by one more than a code point count would."""
    text = 'rule x {\n    when event.scene == "注册😀" and phone.vaild\n    then allow\n}\n'
    u = await open_file(client, rules / "demo" / "emoji.rf", text)
    diags = await diagnostics(client, u, lambda d: bool(errors(d)))
    (err,) = [d for d in errors(diags) if "vaild" in d.message]
    line = text.split("\n")[1]
    start = line.index("phone.vaild")
    units = len(line[:start].encode("utf-16-le")) // 2
    assert units == start + 1
    assert err.range.start == types.Position(1, units)
    assert err.range.end == types.Position(1, units + len("phone.vaild"))


async def test_a_label_the_list_does_not_have_is_an_error_like_check(
    client: LanguageClient, rules: Path
) -> None:
    """`privacy_numbers.label("risks")` compiles but could never be true: the list's header
    has `risk`. The editor says so where it is written, with ringfence check's words."""
    from lsp_support import RINGFENCE

    path = rules / "demo" / "policy.rf"
    text = path.read_text().replace(
        'privacy_numbers.label("risk")', 'privacy_numbers.label("risks")'
    )
    path.write_text(text)
    u = await open_file(client, path)
    (err,) = errors(await diagnostics(client, u, lambda d: bool(errors(d))))
    assert err.message == "list 'privacy_numbers' has no label column 'risks'; did you mean 'risk'?"
    line = text.splitlines()[err.range.start.line]
    assert line[err.range.start.character : err.range.end.character] == '"risks"'
    proc = await asyncio.create_subprocess_exec(
        RINGFENCE, "check", str(rules), stdout=asyncio.subprocess.PIPE
    )
    out = (await proc.communicate())[0].decode()
    start = f"{err.range.start.line + 1}:{err.range.start.character + 1}"
    assert f"demo/policy.rf:{start}: error: {err.message}" in out


async def test_dead_and_contradictory_rules(client: LanguageClient, rules: Path) -> None:
    """The lint stage's findings reach the editor, where the author wrote them: a rule that
    can never fire is an error, a comparison with a fraction of a count a warning, and the
    did-you-mean fix is the lower-case kind."""
    path = rules / "demo" / "policy.rf"
    text = path.read_text() + (
        '\nrule dead_kind {\n    when phone.segment_kind == "MVNO"\n    then review\n}\n'
        "\nrule fractional {\n    when codes_today > 0.5\n    then review\n}\n"
    )
    u = await open_file(client, path, text)
    diags = await diagnostics(client, u, lambda d: bool(errors(d)))
    (err,) = errors(diags)
    start = position_of(text, 'phone.segment_kind == "MVNO"')
    assert err.range.start == start
    assert err.range.end.character == start.character + len('phone.segment_kind == "MVNO"')
    assert err.message.startswith("rule 'dead_kind' can never fire: phone.segment_kind is one of")
    assert err.message.endswith("did you mean 'mvno'?")
    (warning,) = [d for d in diags if "whole number" in d.message]
    assert warning.severity == types.DiagnosticSeverity.Warning
    assert warning.range.start == position_of(text, "codes_today > 0.5")


async def test_a_time_zone_unlike_tenant_toml(client: LanguageClient, rules: Path) -> None:
    (rules / "demo" / "tenant.toml").write_text('timezone = "Europe/Berlin"\n')
    path = rules / "demo" / "policy.rf"
    u = await open_file(client, path)
    diags = await diagnostics(client, u, lambda d: any("tenant.toml" in x.message for x in d))
    (found,) = [d for d in diags if "tenant.toml" in d.message]
    assert found.severity == types.DiagnosticSeverity.Warning
    assert found.range.start == position_of(path.read_text(), '"Asia/Shanghai"')
