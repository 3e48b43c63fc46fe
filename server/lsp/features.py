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

from dsl import ast, reference, schema
from dsl.durations import DurationError, format_duration, parse_duration
from dsl.formatter import expr_text
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
            j = i + 1
            while j < n and text_before[j] not in '"\n':
                j += 2 if text_before[j] == "\\" else 1
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
    if line.count('"') % 2 == 1:
        return []
    stripped = line[: len(line) - len(_WORD_BEFORE.search(line).group(0))]  # type: ignore[union-attr]
    dotted = _DOTTED_BEFORE.search(line)
    if dotted:
        obj = dotted.group(1)
        if obj == "phone":
            fields = [
                Item(f.name.removeprefix("phone."), ItemKind.FIELD, f.detail, f.doc)
                for f in reference.facts()
                if f.name.startswith("phone.")
            ]
            return fields + _entries(reference.phone_helpers(), ItemKind.METHOD)
        if obj == "event":
            return [
                Item(f.name.removeprefix("event."), ItemKind.FIELD, f.detail, f.doc)
                for f in reference.facts()
                if f.name.startswith("event.")
            ]
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
    if last == "per" or last.endswith("(per"):
        return _entries(reference.key_kinds(), ItemKind.KEYWORD)
    if len(words) >= 2 and words[-2] == "per" and words[-1] == "list":
        return [i for i in _name_items(scope) if i.kind is ItemKind.LIST]
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
    ]
    tenant = reference.fact("tenant")
    if tenant is not None:
        items.append(Item("tenant", ItemKind.FIELD, tenant.detail, tenant.doc))
    items += _entries(reference.FUNCTIONS, ItemKind.FUNCTION)
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
        case ast.ListDecl(name=n, path=p):
            return f'list {n} from "{p}"'
        case ast.Aggregate():
            args = [expr_text(a) for a in item.args]
            args += [f"per {p.kind}" + (f" {p.arg}" if p.arg else "") for p in item.per]
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


_MAX_INT = 10**30


def const_value(name: str, scope: Scope, depth: int = 0) -> str | None:
    """A const's value as the checker would fold it, when it is simple enough to show;
    None otherwise. Bounded: no chain longer than 16, no int beyond 10**30."""
    d = scope.resolve(name)
    if d is None or not isinstance(d.item, ast.Const) or depth > 16:
        return None
    value = _eval(d.item.value, scope, depth)
    return None if value is None else _show(value)


Value = int | str | bool | tuple[str, int] | frozenset[object]


def _show(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return format_duration(v[1])
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, frozenset):
        return "{" + ", ".join(sorted(_show(x) for x in v)) + "}"  # type: ignore[arg-type]
    return str(v)


def _eval(e: ast.Expr, scope: Scope, depth: int) -> Value | None:
    match e:
        case ast.IntLit(value=v):
            return v if abs(v) < _MAX_INT else None
        case ast.BoolLit(value=v):
            return v
        case ast.StrLit() if e.is_plain:
            return e.value
        case ast.DurationLit(text=t):
            try:
                return ("dur", parse_duration(t))
            except DurationError:
                return None
        case ast.Name(name=n):
            d = scope.resolve(n)
            if d is None or not isinstance(d.item, ast.Const) or depth > 16:
                return None
            return _eval(d.item.value, scope, depth + 1)
        case ast.Neg(operand=o):
            inner = _eval(o, scope, depth)
            if isinstance(inner, int) and not isinstance(inner, bool):
                return -inner
            if isinstance(inner, tuple):
                return ("dur", -inner[1])
            return None
        case ast.SetLit(items=items):
            vals = [_eval(i, scope, depth) for i in items]
            if any(v is None for v in vals):
                return None
            return frozenset(vals)
        case ast.BinOp(op=op, left=lf, right=rt):
            a, b = _eval(lf, scope, depth), _eval(rt, scope, depth)
            return _arith(op, a, b)
    return None


def _arith(op: str, a: Value | None, b: Value | None) -> Value | None:
    def num(x: Value | None) -> int | None:
        return x if isinstance(x, int) and not isinstance(x, bool) else None

    ai, bi = num(a), num(b)
    ad = a[1] if isinstance(a, tuple) else None
    bd = b[1] if isinstance(b, tuple) else None
    result: int | None = None
    dur = False
    if ai is not None and bi is not None:
        result = _int_op(op, ai, bi)
    elif ad is not None and bd is not None and op in "+-":
        result, dur = _int_op(op, ad, bd), True
    elif op == "*" and ad is not None and bi is not None:
        result, dur = ad * bi, True
    elif op == "*" and ai is not None and bd is not None:
        result, dur = ai * bd, True
    elif op == "/" and ad is not None and bi is not None:
        result, dur = _int_op(op, ad, bi), True
    if result is None or abs(result) >= _MAX_INT:
        return None
    return ("dur", result) if dur else result


def _int_op(op: str, a: int, b: int) -> int | None:
    if max(abs(a), abs(b)) >= _MAX_INT:
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return None if b == 0 else a // b
    return None


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
        *reference.FUNCTIONS,
    )
    for e in tables:
        if e.name == word:
            return f"```ringfence\n{e.detail}\n```\n\n{e.doc}"
    if word in reference.KEYWORD_DOCS:
        return f"**{word}**: {reference.KEYWORD_DOCS[word]}"
    return None
