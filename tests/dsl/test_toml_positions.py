"""dsl.toml_positions: every key of a random TOML document is found where it was written."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.toml_positions import Path, Place, locate

# -- a random document, written in a random TOML style -----------------------------------

TRICKY = " =[]{}#,.\"'\\\nab"
keys = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_-]{0,6}", fullmatch=True),
    st.text(alphabet="ab .#=[]'\"", min_size=1, max_size=5),
)
strings = st.text(alphabet=TRICKY, max_size=12)
scalars = st.one_of(
    strings,
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=0)
    ),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=timezone(timedelta(hours=8)))
    ),
    st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 1, 1)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(keys, inner, min_size=1, max_size=3)
    ),
    max_leaves=8,
)
documents = st.dictionaries(
    keys,
    st.one_of(values, st.lists(st.dictionaries(keys, values, max_size=3), min_size=1, max_size=3)),
    min_size=1,
    max_size=5,
)


def _key(k: str, draw: st.DrawFn) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", k) and draw(st.booleans()):
        return k
    if "'" not in k and "\n" not in k and draw(st.booleans()):
        return f"'{k}'"
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _string(v: str, draw: st.DrawFn) -> str:
    style = draw(st.integers(0, 3))
    if style == 1 and "'" not in v and "\n" not in v:
        return f"'{v}'"
    if style == 2 and "'''" not in v and not v.endswith("'") and "\r" not in v:
        return f"'''\n{v}'''"  # the newline after the opening quotes is not content
    escaped = v.replace("\\", "\\\\").replace('"', '\\"')
    if style == 3:
        return f'"""\n{escaped}"""'
    return '"' + escaped.replace("\n", "\\n") + '"'


def _value(v: Any, draw: st.DrawFn, multiline: bool) -> str:
    if isinstance(v, str):
        return _string(v, draw)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        sep = draw(st.sampled_from(["T", " "]))
        return v.isoformat(sep=sep)
    if isinstance(v, int | date):
        return v.isoformat() if isinstance(v, date) else str(v)
    if isinstance(v, list):
        if multiline and draw(st.booleans()):
            items = "".join(
                f"\n  {_value(x, draw, multiline)}," + (" # c" if draw(st.booleans()) else "")
                for x in v
            )
            return f"[{items}\n]"
        return "[" + ", ".join(_value(x, draw, multiline) for x in v) + "]"
    assert isinstance(v, dict)
    # Inline tables are one line in TOML 1.0.
    return (
        "{ " + ", ".join(f"{_key(k, draw)} = {_value(x, draw, False)}" for k, x in v.items()) + " }"
    )


def _pairs(table: dict[str, Any], draw: st.DrawFn, prefix: str = "") -> list[str]:
    out = []
    for k, v in table.items():
        key = prefix + _key(k, draw)
        if isinstance(v, dict) and v and draw(st.booleans()):
            out += _pairs(v, draw, key + draw(st.sampled_from([".", " . "])))  # dotted keys
        else:
            comment = "  # note [x] = 1" if draw(st.booleans()) else ""
            out.append(f"{key} = {_value(v, draw, True)}{comment}")
    return out


@st.composite
def written(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    doc = draw(documents)
    lines: list[str] = []
    sections: list[str] = []
    for k, v in doc.items():
        is_aot = isinstance(v, list) and v and all(isinstance(x, dict) for x in v)
        if is_aot and draw(st.booleans()):
            for table in v:
                sections.append(f"[[{_key(k, draw)}]]")
                sections += _pairs(table, draw)
        elif isinstance(v, dict) and v and draw(st.booleans()):
            sections.append(f"\n[{_key(k, draw)}]  # section")
            sections += _pairs(v, draw)
        else:
            lines += _pairs({k: v}, draw)
    return doc, "\n".join(["# a document", *lines, *sections, ""])


def _leaves(value: Any, path: Path = ()) -> list[tuple[Path, Any]]:
    out: list[tuple[Path, Any]] = [(path, value)] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _leaves(v, (*path, i))
    return out


def _text(text: str, place: Place) -> str:
    lines = text.split("\n")
    if place.line == place.end_line:
        return lines[place.line - 1][place.column - 1 : place.end_column - 1]
    first = lines[place.line - 1][place.column - 1 :]
    middle = lines[place.line : place.end_line - 1]
    last = lines[place.end_line - 1][: place.end_column - 1]
    return "\n".join([first, *middle, last])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(written())
def test_every_key_is_found_where_it_was_written(doc_text: tuple[dict[str, Any], str]) -> None:
    doc, text = doc_text
    assert tomllib.loads(text) == doc, text  # the generator writes valid TOML
    positions = locate(text)
    for path, value in _leaves(doc):
        assert path in positions.paths, (path, text)
        found = positions.paths[path]
        if isinstance(path[-1], str):
            # The key text (a header without its brackets) names the path's last part.
            key_text = _text(text, found.key).strip("[]")
            parsed = tomllib.loads(f"{key_text} = 0")
            names: list[str] = []
            while isinstance(parsed, dict):
                (name, parsed), *_ = parsed.items()
                names.append(name)
            assert path[-1] in names, (path, key_text, text)
        if not isinstance(value, dict | list) or (isinstance(value, list) and not value):
            # A scalar's value text reads back as the value itself.
            assert tomllib.loads(f"v = {_text(text, found.value)}")["v"] == value, (path, text)


@pytest.mark.parametrize(
    ("text", "path", "line", "column"),
    [
        ('[[case]]\nname = "a"\n[[case]]\nname = "b"\n', ("case", 1, "name"), 4, 1),
        ("[[case]]\n[case.expect]\naction = 1\n", ("case", 0, "expect", "action"), 3, 1),
        ('a = """\n[[case]]\nx = 1\n"""\nb = 2\n', ("b",), 5, 1),
        ("a = [\n  1, # c\n  [2, 3],\n]\n", ("a", 1, 1), 3, 7),
        ("t = { x = { y = 1 } }\n", ("t", "x", "y"), 1, 13),
        ('"quoted.key" = 1\n', ("quoted.key",), 1, 1),
        ("a . b . c = 1\n", ("a", "b"), 1, 1),
        ("d = 1979-05-27 07:32:00Z\ne = 1\n", ("e",), 2, 1),
        ("[[a.b]]\n[[a.b]]\nx = 1\n", ("a", "b", 1, "x"), 3, 1),
    ],
)
def test_places(text: str, path: Path, line: int, column: int) -> None:
    tomllib.loads(text)
    found = locate(text).paths[path]
    assert (found.key.line, found.key.column) == (line, column)


def test_nearest_ancestor_and_duplicates() -> None:
    text = "[[case]]\nname = 1\nname = 2\n"
    positions = locate(text)
    hit = positions.find(("case", 0, "expect", "action"))
    assert hit is not None
    assert hit[0] == ("case", 0)
    assert positions.duplicate is not None
    path, first, second = positions.duplicate
    assert path == ("case", 0, "name")
    assert (first.key.line, second.key.line) == (2, 3)


@pytest.mark.parametrize("junk", ["", "\n\n", "= = =", "[", "[[", "a", "a = ", '"unclosed', "{}"])
def test_never_fails_on_text_it_does_not_understand(junk: str) -> None:
    locate(junk)  # invalid TOML never reaches it in practice; it still must not fail


def test_datetime_helpers_are_consistent() -> None:
    assert datetime(2026, 1, 5, tzinfo=UTC).isoformat() == "2026-01-05T00:00:00+00:00"
