"""What the editor features answer, from the symbol index and the language tables.

Positions here are the checker's: 1-based lines and 1-based columns in code points. The
server converts to and from the client's units. Completion reads the text before the
cursor, because the file being typed in rarely parses; names come from the last version
of each chunk that did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from dsl import CompileOptions, ast, ir, reference, schema
from dsl.checker import Checker, Unit
from dsl.durations import format_duration, parse_duration
from dsl.formatter import expr_text
from dsl.runtime import fmt_decimal
from dsl.symbols import Definition, Scope, SymbolKind


class ItemKind(StrEnum):
    KEYWORD = "keyword"
    FIELD = "field"
    METHOD = "method"
    FUNCTION = "function"
    CONSTANT = "constant"
    LIST = "list"
    AGGREGATE = "aggregate"
    CONDITION = "condition"
    VALUE = "value"
    UNIT = "unit"
    MODULE = "module"


@dataclass(frozen=True, slots=True)
class Item:
    label: str
    kind: ItemKind
    detail: str = ""
    doc: str = ""
    insert: str | None = None  # text to insert when it differs from the label


COMMON_WINDOWS = ("10m", "1h", "24h", "7d")
_MAX_LINE_CONTEXT = 400
_WORD_BEFORE = re.compile(r"[A-Za-z_0-9]*$")
_DOTTED_BEFORE = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)\.([A-Za-z_0-9]*)$")


def _entries(entries: tuple[reference.Entry, ...], kind: ItemKind) -> list[Item]:
    return [Item(e.name, kind, e.detail, e.doc) for e in entries]


def _name_items(scope: Scope) -> list[Item]:
    kinds = {
        SymbolKind.CONST: ItemKind.CONSTANT,
        SymbolKind.LIST: ItemKind.LIST,
        SymbolKind.AGGREGATE: ItemKind.AGGREGATE,
        SymbolKind.CONDITION: ItemKind.CONDITION,
    }
    return [
        Item(d.name, kinds.get(d.kind, ItemKind.VALUE), describe(d), f"{d.span.path}:{d.span.line}")
        for d in scope.definitions().values()
    ]


def _block(text_before: str) -> str:
    """The innermost open block at the cursor: "rule", "settings" or "" (top level).
    Counts braces outside strings and comments from the last top-level item start."""
    start = max(text_before.rfind("\nrule "), text_before.rfind("\nshadow rule "), 0)
    start = max(start, text_before.rfind("\nsettings"))
    depth = 0
    opener = ""
    i = start
    n = len(text_before)
    while i < n:
        ch = text_before[i]
        if ch == "#":
            nl = text_before.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if ch == '"':
            # r"..." has no escapes: its first '"' ends it.
            raw = i > 0 and text_before[i - 1] == "r" and not _word_char(text_before, i - 2)
            j = i + 1
            while j < n and text_before[j] not in '"\n':
                j += 2 if text_before[j] == "\\" and not raw else 1
            i = j + 1
            continue
        if ch == "{":
            if depth == 0:
                head = text_before[max(0, text_before.rfind("\n", 0, i) + 1) : i].split()
                opener = (
                    "settings" if head[:1] == ["settings"] else "rule" if "rule" in head else ""
                )
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        i += 1
    return opener if depth > 0 else ""


def _word_char(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


# `per (number, ` / `per number, per (list l, ` ...: a key is expected next.
_KEY_IN_GROUP = re.compile(r"\bper\s*\(\s*(?:[A-Za-z_]+(?:\s+[A-Za-z_0-9]+)?\s*,\s*)*$")
_LIST_IN_GROUP = re.compile(r"\bper\s*\(\s*(?:[A-Za-z_]+(?:\s+[A-Za-z_0-9]+)?\s*,\s*)*list\s+$")
_DEFAULT_ACTION = re.compile(r"(?:^|[{\s])default_action\s*=\s*\"?$")


def complete(
    text_before: str, scope: Scope, label_columns: dict[str, tuple[str, ...]]
) -> list[Item]:
    """Completion items for the cursor at the end of ``text_before``."""
    # Only the end of the line matters, and a hostile one-line file must not make the
    # regular expressions below quadratic.
    line = text_before[text_before.rfind("\n") + 1 :][-_MAX_LINE_CONTEXT:]
    kw = reference.keywords()
    defs = scope.definitions()
    # label("...") names, also inside a reason's {interpolation}; else nothing in strings.
    m = re.search(r"([A-Za-z_][A-Za-z_0-9]*)\.label\(\s*\"[^\"]*$", line)
    if m:
        columns = label_columns.get(m.group(1), ())
        return [Item(c, ItemKind.VALUE, f"label of {m.group(1)}") for c in columns]
    stripped = line[: len(line) - len(_WORD_BEFORE.search(line).group(0))]  # type: ignore[union-attr]
    # `default_action = review` or `= "review"`: the setting takes an action.
    if _DEFAULT_ACTION.search(stripped) and _block(text_before) == "settings":
        return _entries(reference.actions(), ItemKind.VALUE)
    if line.count('"') % 2 == 1:
        return []
    dotted = _DOTTED_BEFORE.search(line)
    if dotted:
        obj = dotted.group(1)
        if obj in reference.FACT_OBJECTS:
            fields = [
                Item(f.name.removeprefix(f"{obj}."), ItemKind.FIELD, f.detail, f.doc)
                for f in reference.facts()
                if f.name.startswith(f"{obj}.")
            ]
            if obj == "phone":
                fields += _entries(reference.phone_helpers(), ItemKind.METHOD)
            if obj == "event":
                e = reference.EVENT_HELPER
                fields.append(Item(e.name, ItemKind.METHOD, e.detail, e.doc))
            return fields
        d = defs.get(obj)
        if d is not None and d.kind is SymbolKind.LIST:
            e = reference.LIST_HELPER
            return [Item(e.name, ItemKind.METHOD, e.detail, e.doc)]
        if d is not None and d.kind is SymbolKind.AGGREGATE:
            e = reference.AGGREGATE_HELPER
            return [Item(e.name, ItemKind.METHOD, e.detail, e.doc)]
        return _entries(reference.string_helpers(), ItemKind.METHOD)
    words = stripped.split()
    last = words[-1] if words else ""
    typed = _WORD_BEFORE.search(line).group(0)  # type: ignore[union-attr]
    if re.fullmatch(r"[0-9]+[a-z]*", typed):
        digits = re.match(r"[0-9]+", typed).group(0)  # type: ignore[union-attr]
        return [
            Item(f"{digits}{u.name}", ItemKind.UNIT, u.detail, u.doc)
            for u in reference.duration_units()
        ]
    if last == "then":
        return _entries(reference.actions(), ItemKind.VALUE)
    if len(words) >= 2 and words[-2] == "then" and words[-1] in schema.ACTIONS:
        return [Item("override", ItemKind.KEYWORD, "", reference.KEYWORD_DOCS.get("override", ""))]
    if last == "on_error":
        return _entries(reference.on_error_values(), ItemKind.VALUE)
    if re.search(r"\bage\(\s*per\s+$", stripped):
        return _entries(reference.age_keys(), ItemKind.KEYWORD)
    if re.search(r"\bage\(\s*$", stripped):
        return [
            Item(f"per {e.name}", ItemKind.KEYWORD, e.detail, e.doc) for e in reference.age_keys()
        ]
    if _LIST_IN_GROUP.search(stripped) or (
        len(words) >= 2 and words[-2].endswith("per") and words[-1] == "list"
    ):
        return [i for i in _name_items(scope) if i.kind is ItemKind.LIST]
    if last == "per" or last.endswith("(per") or _KEY_IN_GROUP.search(stripped):
        return _entries((*reference.key_kinds(), *reference.network_keys()), ItemKind.KEYWORD)
    if last == "over":
        return _window_items(defs)
    if re.search(r"\baggregate\s+[A-Za-z_][A-Za-z_0-9]*\s*=\s*$", stripped):
        return _entries(reference.aggregate_kinds(), ItemKind.FUNCTION)
    if re.search(r"\bago\(\s*$|\bsustained\(.*,\s*$", stripped):
        return _window_items(defs, with_today=False)
    block = _block(text_before)
    at_line_start = not stripped.strip()
    if at_line_start and block == "rule":
        return [
            Item(k, ItemKind.KEYWORD, "clause", reference.KEYWORD_DOCS.get(k, ""))
            for k in kw.clauses
        ]
    if at_line_start and block == "settings":
        return _entries(reference.settings(), ItemKind.FIELD)
    if at_line_start and block == "":
        return [
            Item(k, ItemKind.KEYWORD, "declaration", reference.KEYWORD_DOCS.get(k, ""))
            for k in kw.items
        ]
    # An expression.
    items = _name_items(scope)
    items += [
        Item("phone", ItemKind.VALUE, "the number's facts", "phone.FIELD, phone in LIST"),
        Item("event", ItemKind.VALUE, "the event's facts", "event.FIELD"),
        Item("ip", ItemKind.VALUE, "where event.ip is", "ip.FIELD: ip.province, ip.asn, ..."),
    ]
    tenant = reference.fact("tenant")
    if tenant is not None:
        items.append(Item("tenant", ItemKind.FIELD, tenant.detail, tenant.doc))
    items += _entries(reference.functions(), ItemKind.FUNCTION)
    items += [
        Item(k, ItemKind.KEYWORD, "", reference.KEYWORD_DOCS.get(k, ""))
        for k in (*kw.operators, *kw.literals)
    ]
    return items


def _window_items(defs: dict[str, Definition], with_today: bool = True) -> list[Item]:
    items = [Item(w, ItemKind.UNIT, "duration", f"{parse_duration(w)} s") for w in COMMON_WINDOWS]
    if with_today:
        items.append(
            Item("today", ItemKind.KEYWORD, "window", "The calendar day in the policy time zone.")
        )
    for d in defs.values():
        if isinstance(d.item, ast.Const) and isinstance(d.item.value, ast.DurationLit):
            items.append(Item(d.name, ItemKind.CONSTANT, describe(d)))
    return items


# -- hover ------------------------------------------------------------------------------------


def describe(d: Definition) -> str:
    """One line that shows a declaration as written (canonical layout)."""
    item = d.item
    match item:
        case ast.Const(name=n, value=v):
            return f"const {n} = {expr_text(v)}"
        case ast.ListDecl(name=n, path=p, source=src):
            return f'list {n} from "{p}"' if src == "file" else f"list {n} from {src}"
        case ast.Condition(name=n, value=v):
            return f"condition {n} = {expr_text(v)}"
        case ast.Aggregate():
            args = [expr_text(a) for a in item.args]
            keys = [p.kind + (f" {p.arg}" if p.arg else "") for p in item.per]
            if item.per_grouped:
                args.append(f"per ({', '.join(keys)})")
            else:
                args += [f"per {k}" for k in keys]
            args += [f"over {o.text}" for o in item.over]
            head = f"aggregate {item.name} = {item.kind}({', '.join(args)})"
            return head + (f" where {expr_text(item.where)}" if item.where is not None else "")
        case ast.Rule(name=n, shadow=s):
            return ("shadow " if s else "") + f"rule {n}"
        case ast.Setting(name=n, value=v):
            return f"{n} = {expr_text(v)}"
    value = getattr(item, "value", None) or getattr(item, "expr", None)
    if value is not None and not isinstance(value, str | int | bool | tuple):
        return f"{d.kind.value} {d.name} = {expr_text(value)}"
    return f"{d.kind.value} {d.name}"


_MAX_SHOWN = 200  # characters of a const's value shown in a hover
_OPTIONS = CompileOptions()


def const_value(name: str, scope: Scope) -> str | None:
    """A const's value as the checker folds it (int, decimal, duration, string, bool or
    set), or None when it does not fold (an error, a name that is not a const). The
    checker runs on the scope's consts alone: folding is bounded by the language's limits
    (64-bit ints, set sizes), and a const chain too long to follow gives None."""
    d = scope.resolve(name)
    if d is None or not isinstance(d.item, ast.Const):
        return None
    consts = tuple(x.item for x in scope.definitions().values() if isinstance(x.item, ast.Const))
    checker = Checker([Unit(ast.Module("<hover>", consts), library=False)], "", _OPTIONS)
    try:
        checker.declare()
        node = checker.const(name)
    except RecursionError:
        return None
    if not isinstance(node, ir.Lit):
        return None
    shown = _show(node.value, node.type)
    return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 3] + "..."


def _show(value: object, t: ir.Type) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and t is ir.Type.DEC:
        return fmt_decimal(value)
    if isinstance(value, int) and t is ir.Type.DUR:
        return format_duration(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, frozenset):
        item = ir.Type.INT if t is ir.Type.SET_INT else ir.Type.STR
        shown = sorted(value, key=lambda v: (str(type(v)), v))[:50]
        more = f", ... ({len(value)} items)" if len(value) > len(shown) else ""
        return "{" + ", ".join(_show(v, item) for v in shown) + more + "}"
    return str(value)


def hover_definition(d: Definition, scope: Scope, list_info: str = "") -> str:
    """Markdown for a declared name."""
    lines = [f"```ringfence\n{describe(d)}\n```"]
    where = f"{d.span.path}:{d.span.line}"
    if d.kind is SymbolKind.CONST:
        value = const_value(d.name, scope)
        if value is not None and isinstance(d.item, ast.Const) and value != expr_text(d.item.value):
            lines.append(f"value: `{value}`")
    elif d.kind is SymbolKind.AGGREGATE and isinstance(d.item, ast.Aggregate):
        for o in d.item.over:
            if o.is_duration or o.text == "today":
                window = "the calendar day (today)" if o.text == "today" else o.text
            else:
                window = f"{o.text} = {const_value(o.text, scope) or '?'}"
            lines.append(f"window: {window}")
        kinds = {k.name: k for k in reference.aggregate_kinds()}
        if d.item.kind in kinds:
            lines.append(kinds[d.item.kind].doc)
    elif d.kind is SymbolKind.CONDITION:
        lines.append("A named condition: checked once, inlined where a rule uses it.")
    elif d.kind is SymbolKind.SETTINGS:
        doc = next((e.doc for e in reference.settings() if e.name == d.name), "")
        if doc:
            lines.append(doc)
    elif d.kind is SymbolKind.LIST and list_info:
        lines.append(list_info)
    lines.append(f"declared at {where}")
    return "\n\n".join(lines)


def hover_fact(name: str) -> str | None:
    f = reference.fact(name)
    if f is None:
        return None
    return f"```ringfence\n{f.name}: {f.detail}\n```\n\n{f.doc}"


def hover_word(word: str) -> str | None:
    """Keywords, actions, aggregate and key kinds, helpers: their one-line docs."""
    tables = (
        *reference.aggregate_kinds(),
        *reference.actions(),
        *reference.on_error_values(),
        *reference.string_helpers(),
        reference.LIST_HELPER,
        reference.AGGREGATE_HELPER,
        reference.EVENT_HELPER,
        *reference.functions(),
    )
    for e in tables:
        if e.name == word:
            return f"```ringfence\n{e.detail}\n```\n\n{e.doc}"
    if word in reference.KEYWORD_DOCS:
        return f"**{word}**: {reference.KEYWORD_DOCS[word]}"
    return None
