"""Name resolution and type checking: AST modules -> :class:`dsl.ir.CheckedPolicy`.

The checker keeps going after an error so one run reports every problem it can find;
an expression that failed becomes ``ir.Error``, which type-checks against anything, so
one mistake does not cascade into a page of follow-on errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from dsl import ast, ir, lint, schema
from dsl.aggregates import NUMERIC_KINDS, AggKind, KeyKind, Window, calendar_day, sliding
from dsl.diagnostics import Diagnostic, Severity, Suggestion
from dsl.durations import DurationError, format_duration, parse_duration
from dsl.folding import (
    FoldError,
    fold_and,
    fold_arith,
    fold_cmp,
    fold_not,
    fold_or,
    in_range,
    never_true,
)
from dsl.ir import Type
from dsl.lists import NETWORKS, NUMBERS, LabelUse, ListUse
from dsl.lowering import Lowering
from dsl.options import CompileOptions
from dsl.patterns import PatternError, compile_pattern, search
from dsl.suggest import closest
from dsl.zones import zone


@dataclass(frozen=True, slots=True)
class Unit:
    """One parsed file and whether it came from the shared library."""

    module: ast.Module
    library: bool


@dataclass(slots=True)
class _Symbol:
    kind: str  # "const" | "condition" | "list" | "aggregate"
    decl: ast.Const | ast.Condition | ast.ListDecl | ast.Aggregate
    library: bool
    used: bool = False


@dataclass(frozen=True, slots=True)
class _Ctx:
    """Where an expression sits, which decides what it may read."""

    what: str  # "condition", "where filter", "constant", "reason", "risk", "setting"
    aggregates: bool = True
    reason: bool = False
    # An aggregate's where filter may read the decision: it then counts past decisions.
    decision: bool = False


_KINDS: dict[type, str] = {
    ast.Const: "const",
    ast.Condition: "condition",
    ast.ListDecl: "list",
    ast.Aggregate: "aggregate",
}


_ORDERED = (Type.INT, Type.DEC, Type.DUR)


# Did-you-mean compares a name with every candidate: with thousands of long names in scope
# that is milliseconds a lookup, so one check makes at most this many.
MAX_SUGGESTIONS = 100


def _a(t: Type) -> str:
    """``Type`` with its article: "an int", "a string"."""
    word = t.value
    return ("an " if word[0] in "aeiou" else "a ") + word


def _where(span: ast.Span) -> str:
    return f"{span.path}:{span.line}"


class Checker:
    def __init__(self, units: Sequence[Unit], tenant: str, options: CompileOptions) -> None:
        self.units = units
        self.tenant = tenant
        self.options = options
        self.diags: list[Diagnostic] = []
        self.symbols: dict[str, _Symbol] = {}
        self.const_values: dict[str, ir.Node] = {}
        self.resolving: list[str] = []
        self.timezone = options.default_timezone
        self.uses_local_time = False
        self.uses_ip = False  # ip.* read anywhere: the server must look event.ip up
        self.list_uses: list[ListUse] = []  # lookups judged against what each list holds
        # Declared aggregates, their ago()/sustained() windows and age() keys.
        self.aggregates = Lowering(options, self.error, self.warn)
        self.rule_reads: list[str] = []
        self.label_uses: list[LabelUse] = []  # checked against list headers once loaded
        self.combining = ir.Combining()
        self.patterns: dict[str, int] = {}  # regular expression -> index, in first use
        self.programs: dict[str, int] = {}  # regular expression -> RE2 program size
        self.match_sites: dict[ir.StrCall, ast.Span] = {}  # first place of each call
        # Named conditions: checked once per context kind (with or without aggregates).
        self.condition_values: dict[tuple[str, bool], ir.Node] = {}
        self.rule_conditions: list[str] = []
        self.policy_nodes = 0
        self.suggestions_left = MAX_SUGGESTIONS
        self.reported_node_limit = False
        # What every expression was checked into, for the lint stage (dsl/lint.py).
        self.typed: dict[int, tuple[ast.Expr, ir.Node]] = {}

    # -- reporting --------------------------------------------------------------------------

    def suggest(self, name: str, candidates: Iterable[str]) -> Suggestion | None:
        if self.suggestions_left <= 0:
            return None
        self.suggestions_left -= 1
        found = closest(name, candidates)
        return Suggestion(name, found) if found is not None and found != name else None

    def error(self, span: ast.Span, message: str, suggestion: Suggestion | None = None) -> ir.Error:
        self.diags.append(Diagnostic.at(span, Severity.ERROR, message, suggestion))
        return ir.Error()

    def warn(self, span: ast.Span, message: str) -> None:
        self.diags.append(Diagnostic.at(span, Severity.WARNING, message))

    # -- the whole policy -------------------------------------------------------------------

    def check(self) -> ir.CheckedPolicy:
        self.declare()
        self.check_settings()
        for name, sym in self.symbols.items():
            if sym.kind == "const":
                self.const(name)
        for sym in self.symbols.values():
            if sym.kind == "aggregate":
                assert isinstance(sym.decl, ast.Aggregate)
                self.aggregate(sym.decl)
        rules = self.rules()
        for name, sym in self.symbols.items():
            if sym.kind == "condition" and not sym.used:
                self.condition(name, sym.decl.span, _Ctx("condition"))  # still checked
        self.report_unused()
        checked = ir.CheckedPolicy(
            tenant=self.tenant,
            timezone=self.timezone,
            aggregates=self.aggregates.finish(self.in_plan),
            lists=tuple(
                (
                    n,
                    s.decl.path,
                    s.decl.span.path,
                    s.decl.span.line,
                    s.decl.span.column,
                    s.decl.source == "state",
                )
                for n, s in self.symbols.items()
                if s.kind == "list" and isinstance(s.decl, ast.ListDecl)
            ),
            rules=rules,
            uses_local_time=self.uses_local_time,
            combining=self.combining,
            patterns=tuple(self.patterns),
            label_uses=tuple(dict.fromkeys(self.label_uses)),
            sites=ir.Sites(
                matches=tuple(self.match_sites.items()),
                aggregates=tuple(self.aggregates.sites.items()),
                programs=tuple(self.programs.items()),
            ),
            uses_ip=self.uses_ip,
            list_uses=tuple(dict.fromkeys(self.list_uses)),
        )
        self.diags.extend(
            lint.lint(
                lint.LintInput(
                    modules=tuple((u.module, u.library) for u in self.units),
                    typed=self.typed,
                    policy=checked,
                    conditions=frozenset(
                        n for n, s in self.symbols.items() if s.kind == "condition"
                    ),
                    options=self.options,
                )
            )
        )
        return checked

    def declare(self) -> None:
        for unit in self.units:
            for item in unit.module.items:
                if isinstance(item, ast.ListDecl) and item.source not in ("file", "state"):
                    self.error(
                        item.span,
                        f"list '{item.name}' comes from a file (\"lists/{item.name}.csv\")"
                        f" or from state, not '{item.source}'",
                        self.suggest(item.source, ("state",)),
                    )
                    continue
                if isinstance(item, ast.Const | ast.Condition | ast.ListDecl | ast.Aggregate):
                    kind = _KINDS[type(item)]
                    if item.name in schema.RESERVED:
                        self.error(item.span, f"'{item.name}' is a reserved name")
                        continue
                    prev = self.symbols.get(item.name)
                    if prev is not None:
                        self.error(
                            item.span,
                            f"duplicate name '{item.name}': already declared as a {prev.kind}"
                            f" at {_where(prev.decl.span)}",
                        )
                        continue
                    self.symbols[item.name] = _Symbol(kind, item, unit.library)
                elif unit.library and isinstance(item, ast.Rule | ast.Settings):
                    what = "rules" if isinstance(item, ast.Rule) else "settings"
                    self.error(
                        item.span,
                        f"library files may declare only const, condition, list and aggregate;"
                        f" {what}"
                        " belong in tenant files",
                    )

    def check_settings(self) -> None:
        seen: dict[str, ast.Span] = {}
        values: dict[str, object] = {}
        for unit in self.units:
            for item in unit.module.items:
                if not isinstance(item, ast.Settings):
                    continue
                for entry in item.entries:
                    if entry.name not in schema.SETTINGS:
                        self.error(
                            entry.span,
                            f"unknown setting '{entry.name}' (known: "
                            + ", ".join(schema.SETTINGS)
                            + ")",
                            self.suggest(entry.name, schema.SETTINGS),
                        )
                        continue
                    if entry.name in seen:
                        self.error(
                            entry.span,
                            f"setting '{entry.name}' is already set at {_where(seen[entry.name])}",
                        )
                        continue
                    seen[entry.name] = entry.span
                    value = self.setting(entry)
                    if value is not None:
                        values[entry.name] = value
        if isinstance(tz := values.get("timezone"), str):
            self.timezone = tz
        review = values.get("review_score", 0)
        block = values.get("block_score", 0)
        assert isinstance(review, int)
        assert isinstance(block, int)
        if review and block and block < review:
            self.error(
                seen["block_score"],
                f"block_score {block} is below review_score {review}: a block needs more",
            )
        action = values.get("default_action", "allow")
        assert isinstance(action, str)
        self.combining = ir.Combining(action, review, block)

    def setting(self, entry: ast.Setting) -> object:
        """The checked value of one setting, or None after reporting why not."""
        want = schema.SETTINGS[entry.name]
        if entry.name == "default_action" and isinstance(entry.value, ast.Name):
            word = entry.value.name  # `default_action = review` reads like a rule's then
            if word in schema.ACTIONS:
                return word
        value = self.constant(entry.value, _Ctx("setting", aggregates=False))
        if isinstance(value, ir.Error):
            return None
        if not isinstance(value, ir.Lit) or value.type is not want:
            self.error(entry.value.span, f"{entry.name} must be {_a(want)} constant")
            return None
        v = value.value
        match entry.name:
            case "timezone":
                assert isinstance(v, str)
                if zone(v) is None:
                    self.error(
                        entry.value.span,
                        f"unknown time zone '{v[:60]}' (use an IANA name such as 'Asia/Shanghai')",
                    )
                    return None
            case "default_action":
                if v not in schema.ACTIONS:
                    self.error(
                        entry.value.span,
                        f"unknown action '{v}' (use allow, review or block)",
                        self.suggest(str(v), schema.ACTIONS),
                    )
                    return None
            case "review_score" | "block_score":
                assert isinstance(v, int)
                if not 1 <= v <= 1_000_000:
                    self.error(entry.value.span, f"{entry.name} must be 1..1000000, got {v}")
                    return None
        return v

    def report_unused(self) -> None:
        for name, sym in self.symbols.items():
            if not sym.used and not sym.library:
                self.warn(sym.decl.span, f"{sym.kind} '{name}' is never used")

    # -- constants --------------------------------------------------------------------------

    def const(self, name: str) -> ir.Node:
        if name in self.const_values:
            return self.const_values[name]
        sym = self.symbols[name]
        assert isinstance(sym.decl, ast.Const)
        if name in self.resolving:
            cycle = " -> ".join([*self.resolving[self.resolving.index(name) :], name])
            self.const_values[name] = self.error(
                sym.decl.span, f"constant '{name}' is defined in terms of itself ({cycle})"
            )
            return self.const_values[name]
        self.resolving.append(name)
        value = self.constant(sym.decl.value, _Ctx("constant", aggregates=False))
        self.resolving.pop()
        self.const_values[name] = value
        return value

    def condition(self, name: str, span: ast.Span, ctx: _Ctx) -> ir.Node:
        """A named condition, checked once and inlined where it is used (so folding and
        contradiction checks see through it); rules remember its name for explanations."""
        sym = self.symbols[name]
        assert isinstance(sym.decl, ast.Condition)
        if name in self.resolving:
            cycle = " -> ".join([*self.resolving[self.resolving.index(name) :], name])
            return self.error(
                sym.decl.span, f"condition '{name}' is defined in terms of itself ({cycle})"
            )
        key = (name, ctx.aggregates)
        node = self.condition_values.get(key)
        if node is None:
            self.resolving.append(name)
            saved, self.rule_reads = self.rule_reads, []
            what = "condition" if ctx.aggregates else f"condition used in a {ctx.what}"
            inner = _Ctx(what, aggregates=ctx.aggregates)
            node = self.expr(sym.decl.value, inner)
            self.rule_reads = saved
            self.resolving.pop()
            if self.expect(node, Type.BOOL, sym.decl.value.span, f"condition '{name}'"):
                self.condition_values[key] = node
            else:
                node = self.condition_values[key] = ir.Error()
        if isinstance(node, ir.Error):
            return node
        # The aggregates it reads are read by whatever uses it.
        self.rule_reads.extend(n.agg_id for n in ir.walk(node) if isinstance(n, ir.AggValue))
        self.rule_conditions.append(name)
        if isinstance(node, ir.Lit) or not ctx.aggregates:
            # A constant folds into what uses it; a where filter is computed once per
            # aggregate already, and its canonical text names no condition.
            return node
        return ir.Named(name, node, node.type, node.nullable)

    def constant(self, e: ast.Expr, ctx: _Ctx) -> ir.Node:
        node = self.expr(e, ctx)
        if isinstance(node, ir.Lit | ir.Error):
            return node
        return self.error(e.span, f"a {ctx.what} must be a constant (literals and consts only)")

    # -- aggregates -------------------------------------------------------------------------

    def aggregate(self, d: ast.Aggregate) -> None:
        kind = schema.AGG_KINDS.get(d.kind)
        ok = True
        if kind is None:
            self.error(
                d.kind_span,
                f"unknown aggregate kind '{d.kind}' (use count, distinct, run, sum, avg, min"
                " or max)",
                self.suggest(d.kind, schema.AGG_KINDS),
            )
            ok = False
        field = ""
        value: ir.Node | None = None
        stray = _stray_keys(d)
        if stray:
            keys = ", ".join(
                [*(p.kind if p.arg is None else f"{p.kind} {p.arg}" for p in d.per), *stray]
            )
            self.error(
                d.args[-len(stray)].span,
                f"'{', '.join(stray)}' after 'per {d.per[0].kind}' is read as a field of"
                f" {d.kind}(); to count per several keys together write per ({keys})",
            )
            ok = False
        elif kind in NUMERIC_KINDS:
            if len(d.args) != 1:
                self.error(
                    d.kind_span,
                    f"{d.kind}() needs exactly one numeric value, e.g."
                    f' {d.kind}(event.number("amount"), per number, over 1d)',
                )
                ok = False
            else:
                value = self.numeric_value(d.kind, d.args[0])
                ok = ok and value is not None
                if value is not None:
                    field = "value:" + ir.canonical(value)
        elif kind is AggKind.DISTINCT:
            if len(d.args) != 1:
                self.error(d.kind_span, "distinct() needs exactly one field, e.g. event.app_id")
                ok = False
            else:
                field = self.distinct_field(d.args[0])
                ok = ok and bool(field)
        elif kind is not None and d.args:
            self.error(d.args[0].span, f"{d.kind}() takes no field, only 'per' and 'over'")
            ok = False
        key, key_arg, more_keys = self.per(d, kind)
        window = self.over(d)
        ok = ok and key is not None and window is not None
        where = None
        if d.where is not None:
            where = self.expr(d.where, _Ctx("where filter", aggregates=False, decision=True))
            self.expect(where, Type.BOOL, d.where.span, "a where filter")
            if isinstance(where, ir.Lit) and where.value is False:
                self.error(
                    d.where.span,
                    f"aggregate '{d.name}' can never be fed: its filter is always false",
                )
        if ok and kind is not None and key is not None and window is not None:
            self.aggregates.declare(
                d.name,
                d.span,
                kind=kind,
                keys=((key, key_arg), *more_keys),
                field=field,
                where=where,
                window=window,
                value=value,
            )

    def numeric_value(self, kind: str, e: ast.Expr) -> ir.Node | None:
        """The value a sum/avg/min/max adds up: a number computed from the event alone."""
        node = self.expr(e, _Ctx(f"{kind}() value", aggregates=False))
        if isinstance(node, ir.Error):
            return None
        if node.type not in (Type.INT, Type.DEC):
            self.error(
                e.span,
                f"{kind}() is over a number, not a {node.type.value}: a numeric attribute"
                ' is event.number("key")',
            )
            return None
        if isinstance(node, ir.Lit):
            self.error(
                e.span,
                f"{kind}() of a constant says nothing about the events: give a value of each"
                ' event, e.g. event.number("amount")',
            )
            return None
        return node

    def distinct_field(self, e: ast.Expr) -> str:
        text = _dotted(e)
        if text in schema.DISTINCT_FIELDS:
            if text.startswith("ip."):
                self.uses_ip = True
            return schema.DISTINCT_FIELDS[text]
        if (
            isinstance(e, ast.Index)
            and _dotted(e.obj) == "event.attributes"
            and isinstance(e.key, ast.StrLit)
            and e.key.is_plain
        ):
            return "attr:" + e.key.value
        self.error(
            e.span,
            "distinct() counts one of event.app_id, event.device_id, event.ip, event.scene,"
            " phone, phone.province, phone.city, ip.country, ip.province, ip.city or"
            ' event.attributes["key"]',
        )
        return ""

    def per(
        self, d: ast.Aggregate, kind: AggKind | None
    ) -> tuple[KeyKind | None, str, tuple[tuple[KeyKind, str], ...]]:
        """The key an aggregate counts per: one, or up to MAX_KEYS counted together."""
        if not d.per:
            self.error(d.kind_span, f"aggregate '{d.name}' needs a 'per' key, e.g. per number")
            return None, "", ()
        if len(d.per) > schema.MAX_KEYS:
            self.error(
                d.per[schema.MAX_KEYS].span,
                f"aggregate '{d.name}' counts per at most {schema.MAX_KEYS} keys together",
            )
            return None, "", ()
        keys: list[tuple[KeyKind, str]] = []
        for p in d.per:
            key = self.per_key(p)
            if key is None:
                return None, "", ()
            if key in keys:
                self.error(p.span, f"'per {p.kind}' is given twice")
                return None, "", ()
            keys.append(key)
        if len(keys) > 1 and any(k is KeyKind.TENANT for k, _ in keys):
            where = next(p.span for p in d.per if p.kind == "tenant")
            self.error(where, "every aggregate is per tenant already; leave 'per tenant' out")
            return None, "", ()
        if kind is AggKind.RUN and (
            len(keys) != 1 or keys[0][0] not in (KeyKind.SEGMENT, KeyKind.PREFIX)
        ):
            self.error(d.per[0].span, "run() is counted per segment or per prefix N")
            return None, "", ()
        (first, arg), *rest = keys
        return first, arg, tuple(rest)

    def per_key(self, p: ast.Per | ast.PerRef) -> tuple[KeyKind, str] | None:
        key = schema.KEY_KINDS.get(p.kind)
        if key is None:
            self.error(
                p.span,
                f"unknown key '{p.kind}' (use number, list NAME, segment, prefix N, device, ip,"
                ' ip/N, app, tenant or attribute "NAME")',
                self.suggest(p.kind, schema.KEY_KINDS),
            )
            return None
        arg = ""
        if p.string is not None and key is not KeyKind.ATTRIBUTE:
            self.error(p.span, f"'per {p.kind}' takes no name: only per attribute \"NAME\" does")
            return None
        if key is KeyKind.ATTRIBUTE:
            if p.string is None:
                self.error(
                    p.span,
                    "'per attribute' needs the attribute's name as a string:"
                    f' per attribute "{p.arg or "user_id"}"',
                )
                return None
            if not 1 <= len(p.string) <= schema.MAX_ATTRIBUTE_KEY:
                self.error(
                    p.span,
                    f"an attribute name has 1..{schema.MAX_ATTRIBUTE_KEY} characters, as"
                    " requests send them",
                )
                return None
            arg = p.string
        elif key is KeyKind.LIST:
            sym = self.symbols.get(p.arg or "")
            if p.arg is None:
                self.error(p.span, "'per list' needs a list name: per list NAME")
                return None
            if sym is None or sym.kind != "list":
                self.error(
                    p.span, f"unknown list '{p.arg}'", self.suggest(p.arg, self.list_names())
                )
                return None
            sym.used = True
            arg = p.arg
        elif key is KeyKind.PREFIX:
            if p.arg is None or not p.arg.isdigit():
                self.error(p.span, "'per prefix' needs a digit count: per prefix 7")
                return None
            n = int(p.arg) if len(p.arg) <= 3 else schema.MAX_PREFIX_DIGITS + 1
            if not 1 <= n <= schema.MAX_PREFIX_DIGITS:
                self.error(p.span, f"prefix length must be 1..{schema.MAX_PREFIX_DIGITS}, got {n}")
                return None
            arg = str(n)
        elif key is KeyKind.IP and p.arg is not None:
            bits = self.network_bits(p)
            if bits is None:
                return None
            arg = str(bits)
        elif p.arg is not None:
            if p.arg.startswith("/"):
                self.error(
                    p.span, f"only an IP address has networks: 'per {p.kind}/N' is not a key"
                )
            else:
                self.error(p.span, f"'per {p.kind}' takes no argument")
            return None
        return key, arg

    def network_bits(self, p: ast.Per | ast.PerRef) -> int | None:
        """``per ip/24``: the prefix length of the network counted; up to 32 an IPv4
        network, above 32 an IPv6 one (docs/dsl.md)."""
        text = p.arg or ""
        if not text.startswith("/"):
            self.error(p.span, "write a network as 'per ip/24' (IPv4) or 'per ip/64' (IPv6)")
            return None
        digits = text[1:]
        n = int(digits) if len(digits) <= 3 else schema.IPV6_BITS + 1
        if not schema.MIN_NETWORK_BITS <= n <= schema.IPV6_BITS or n == schema.IPV4_BITS + 1:
            self.error(
                p.span,
                f"a network is /{schema.MIN_NETWORK_BITS}../{schema.IPV4_BITS} (IPv4) or"
                f" /{schema.IPV4_BITS + 2}../{schema.IPV6_BITS} (IPv6), not /{digits[:4]}",
            )
            return None
        return n

    def over(self, d: ast.Aggregate) -> Window | None:
        if len(d.over) != 1:
            span = d.over[1].span if d.over else d.kind_span
            self.error(span, f"aggregate '{d.name}' needs exactly one 'over' window")
            return None
        o = d.over[0]
        if not o.is_duration and o.text == "today":
            return calendar_day(self.timezone)
        seconds: int | None = None
        if o.is_duration:
            seconds = self.duration_text(o.text, o.span)
        else:
            sym = self.symbols.get(o.text)
            if sym is None or sym.kind != "const":
                self.error(o.span, f"unknown window '{o.text}' (use a duration like 1h, or today)")
                return None
            sym.used = True
            value = self.const(o.text)
            if isinstance(value, ir.Lit) and value.type is Type.DUR:
                assert isinstance(value.value, int)
                seconds = value.value
            elif not isinstance(value, ir.Error):
                self.error(o.span, f"window '{o.text}' is {_a(value.type)}, not a duration")
        if seconds is None:
            return None
        if seconds <= 0:
            self.error(o.span, "a window must be longer than 0s")
            return None
        if seconds > self.options.max_window_s:
            self.error(
                o.span,
                f"window {format_duration(seconds)} is longer than the maximum"
                f" {format_duration(self.options.max_window_s)}",
            )
            return None
        return sliding(seconds)

    def duration_text(self, text: str, span: ast.Span) -> int | None:
        try:
            return parse_duration(text)
        except DurationError as err:
            self.error(span, str(err))
            return None

    def in_plan(self, name: str) -> bool:
        """Whether a declared aggregate is planned: a library aggregate that no rule reads
        would only cost writes, so it is left out."""
        sym = self.symbols[name]
        return not (sym.library and not sym.used)

    def list_names(self) -> list[str]:
        return [n for n, s in self.symbols.items() if s.kind == "list"]

    # -- rules ------------------------------------------------------------------------------

    def rules(self) -> tuple[ir.CheckedRule, ...]:
        out: list[ir.CheckedRule] = []
        seen: dict[str, ast.Span] = {}
        for unit in self.units:
            if unit.library:
                continue
            for item in unit.module.items:
                if not isinstance(item, ast.Rule):
                    continue
                if item.name in seen:
                    self.error(
                        item.name_span,
                        f"duplicate rule '{item.name}': already defined at"
                        f" {_where(seen[item.name])}",
                    )
                    continue
                seen[item.name] = item.span
                if len(seen) == self.options.max_rules + 1:
                    self.error(
                        item.name_span,
                        f"too many rules: a policy holds at most {self.options.max_rules}",
                    )
                if len(seen) > self.options.max_rules:
                    continue
                checked = self.rule(item)
                if checked is not None:
                    out.append(checked)
        return tuple(out)

    def rule(self, r: ast.Rule) -> ir.CheckedRule | None:
        by_kind: dict[type, ast.Clause] = {}
        for c in r.clauses:
            if type(c) in by_kind:
                self.error(c.span, f"duplicate '{_clause_word(c)}' clause in rule '{r.name}'")
                continue
            by_kind[type(c)] = c
        when = by_kind.get(ast.When)
        then = by_kind.get(ast.Then)
        score_clause = by_kind.get(ast.Score)
        if when is None:
            self.error(r.name_span, f"rule '{r.name}' has no 'when' clause")
        if then is None and score_clause is None:
            self.error(
                r.name_span, f"rule '{r.name}' has no 'then' clause (or a 'score' to add up)"
            )
        self.rule_reads = []
        self.rule_conditions = []
        cond: ir.Node = ir.Error()
        if isinstance(when, ast.When):
            cond = self.expr(when.expr, _Ctx("condition"))
            self.expect(cond, Type.BOOL, when.expr.span, "a condition")
            nodes = len(ir.walk(cond))
            self.policy_nodes += nodes
            if self.policy_nodes > self.options.max_policy_nodes:
                if not self.reported_node_limit:
                    self.reported_node_limit = True
                    self.error(
                        when.expr.span,
                        f"the rules so far have {self.policy_nodes} expression nodes; a policy"
                        f" holds at most {self.options.max_policy_nodes} (expanded sustained()"
                        " and named conditions count every time they are used)",
                    )
                cond = ir.Error()
            elif nodes > self.options.max_rule_nodes:
                self.error(
                    when.expr.span,
                    f"condition of rule '{r.name}' has {nodes} expression nodes; at most"
                    f" {self.options.max_rule_nodes}",
                )
                cond = ir.Error()
            elif never_true(cond):
                self.error(
                    when.expr.span,
                    f"rule '{r.name}' can never fire: its condition is never true",
                )
            elif isinstance(cond, ir.Lit) and cond.value is True:
                self.warn(when.expr.span, f"rule '{r.name}' fires on every request")
        conditions = tuple(dict.fromkeys(self.rule_conditions))
        action, override = "", False
        if isinstance(then, ast.Then):
            action, override = then.action, then.override
            if action not in schema.ACTIONS:
                self.error(
                    then.span,
                    f"unknown action '{action}' (use allow, review or block)",
                    self.suggest(action, schema.ACTIONS),
                )
            elif override and action != "allow":
                self.error(then.span, "only 'allow' can be an override")
        risk = self.clause_int(by_kind.get(ast.Risk), "risk", (0, self.options.max_risk))
        priority = self.clause_int(by_kind.get(ast.Priority), "priority", schema.PRIORITY_RANGE)
        score = self.clause_int(score_clause, "score", schema.SCORE_RANGE)
        if (
            isinstance(score_clause, ast.Score)
            and score
            and not (self.combining.review_score or self.combining.block_score)
        ):
            self.warn(
                score_clause.span,
                f"rule '{r.name}' adds a score, but no review_score or block_score is set,"
                " so scores decide nothing",
            )
        if override and isinstance(by_kind.get(ast.Priority), ast.Priority):
            self.warn(
                by_kind[ast.Priority].span,
                "an override already wins over every priority; 'priority' changes nothing here",
            )
        tags: tuple[str, ...] = ()
        tags_clause = by_kind.get(ast.Tags)
        if isinstance(tags_clause, ast.Tags):
            tags = tuple(self.tag(t) for t in tags_clause.values)
        reason: tuple[str | ir.Node, ...] = (r.name,)
        reason_clause = by_kind.get(ast.Reason)
        if isinstance(reason_clause, ast.Reason):
            reason = self.reason(reason_clause.text)
        reads = tuple(dict.fromkeys(self.rule_reads))  # the condition's and the reason's
        on_error = "skip"
        oe = by_kind.get(ast.OnError)
        if isinstance(oe, ast.OnError):
            if oe.value not in schema.ON_ERROR:
                self.error(
                    oe.span,
                    f"unknown on_error '{oe.value}' (use skip, fire, allow, review or block)",
                    self.suggest(oe.value, schema.ON_ERROR),
                )
            else:
                on_error = oe.value
        if when is None or (then is None and score_clause is None):
            return None
        return ir.CheckedRule(
            r.name,
            r.shadow,
            action,
            override,
            risk,
            tags,
            reason,
            on_error,
            cond,
            reads,
            r.span.path,
            r.span.line,
            priority,
            score,
            tuple((n, self.condition_values[(n, True)]) for n in conditions),
            r.span.column,
        )

    def clause_int(self, clause: ast.Clause | None, word: str, bounds: tuple[int, int]) -> int:
        """The constant int of a ``risk``/``priority``/``score`` clause, range-checked."""
        if not isinstance(clause, ast.Risk | ast.Priority | ast.Score):
            return 0
        value = self.constant(clause.expr, _Ctx(word, aggregates=False))
        if not isinstance(value, ir.Lit):
            return 0
        if value.type is not Type.INT:
            self.error(clause.expr.span, f"{word} must be an int, got {value.type.value}")
            return 0
        assert isinstance(value.value, int)
        low, high = bounds
        if not low <= value.value <= high:
            self.error(clause.expr.span, f"{word} {value.value} is out of range {low}..{high}")
            return 0
        return value.value

    def tag(self, s: ast.StrLit) -> str:
        if not s.is_plain:
            self.error(s.span, "interpolation '{...}' is only allowed in reasons")
        elif not s.value.strip():
            self.error(s.span, "a tag cannot be empty")
        return s.value

    def reason(self, s: ast.StrLit) -> tuple[str | ir.Node, ...]:
        parts: list[str | ir.Node] = []
        for p in s.parts:
            if isinstance(p, str):
                parts.append(p)
                continue
            node = self.expr(p, _Ctx("reason", reason=True))
            if node.type in (Type.SET_INT, Type.SET_STR):
                self.error(p.span, "a set cannot be interpolated into a reason")
            parts.append(node)
        return tuple(parts)

    # -- expressions ------------------------------------------------------------------------

    def expect(self, node: ir.Node, want: Type, span: ast.Span, what: str) -> bool:
        if node.type is Type.ERROR or node.type is want:
            return True
        self.error(span, f"{what} must be {_a(want)}, got {node.type.value}")
        return False

    def expr(self, e: ast.Expr, ctx: _Ctx) -> ir.Node:
        node = self._expr(e, ctx)
        self.typed[id(e)] = (e, node)
        return node

    def _expr(self, e: ast.Expr, ctx: _Ctx) -> ir.Node:
        match e:
            case ast.IntLit(value=v):
                return ir.Lit(v, Type.INT)
            case ast.DecimalLit(text=text):
                return self.decimal(text, e.span)
            case ast.PerRef():
                return self.error(
                    e.span, "'per KEY' is only an argument of age(), e.g. age(per number)"
                )
            case ast.BoolLit(value=v):
                return ir.Lit(v, Type.BOOL)
            case ast.DurationLit(text=t):
                seconds = self.duration_text(t, e.span)
                return ir.Error() if seconds is None else ir.Lit(seconds, Type.DUR)
            case ast.StrLit():
                if not e.is_plain:
                    return self.error(e.span, "interpolation '{...}' is only allowed in reasons")
                return ir.Lit(e.value, Type.STR)
            case ast.Name():
                return self.name(e, ctx)
            case ast.Attr():
                return self.attr(e, ctx)
            case ast.Index():
                return self.index(e, ctx)
            case ast.Method():
                return self.method(e, ctx)
            case ast.Call():
                return self.call(e, ctx)
            case ast.SetLit():
                return self.set_lit(e, ctx)
            case ast.Not():
                x = self.expr(e.operand, ctx)
                self.expect(x, Type.BOOL, e.operand.span, "the operand of 'not'")
                return x if x.type is Type.ERROR else fold_not(x)
            case ast.Neg():
                x = self.expr(e.operand, ctx)
                if x.type not in (Type.INT, Type.DEC, Type.DUR, Type.ERROR):
                    return self.error(e.span, f"cannot negate {_a(x.type)}")
                if x.type is Type.ERROR:
                    return x
                try:
                    return fold_arith("-", ir.Lit(0, x.type), x, x.type)
                except FoldError as err:
                    return self.error(e.span, str(err))
            case ast.BoolOp():
                ops = [self.expr(o, ctx) for o in e.operands]
                bad = False
                for o, src in zip(ops, e.operands, strict=True):
                    bad = not self.expect(o, Type.BOOL, src.span, f"an operand of '{e.op}'") or bad
                if bad or any(o.type is Type.ERROR for o in ops):
                    return ir.Error()
                if e.op == "and":
                    return fold_and(ops)
                return fold_or(ops)
            case ast.Compare():
                return self.compare(e.op, e.left, e.right, e.span, ctx)
            case ast.Between():
                lo = self.compare(">=", e.value, e.low, e.span, ctx)
                hi = self.compare("<=", e.value, e.high, e.span, ctx)
                if ir.Error() in (lo, hi):
                    return ir.Error()
                return fold_and([lo, hi])
            case ast.In():
                node = self.membership(e, ctx)
                return node if node.type is Type.ERROR or not e.negated else fold_not(node)
            case ast.BinOp():
                return self.arith(e, ctx)
        raise AssertionError(f"unhandled expression {type(e).__name__}")

    def name(self, e: ast.Name, ctx: _Ctx) -> ir.Node:
        n = e.name
        if n == "tenant":
            return ir.Fact("tenant", Type.STR)
        if n == "phone":
            return self.error(
                e.span,
                "'phone' is the number itself; use a field such as phone.masked or"
                " phone.segment_kind (or 'phone in LIST')",
            )
        if n == "event":
            return self.error(e.span, "'event' is not a value; use a field such as event.scene")
        if n == "ip":
            return self.error(
                e.span, "'ip' is not a value; use a field such as ip.province (or event.ip)"
            )
        sym = self.symbols.get(n)
        if sym is None:
            if n in schema.EVENT_FIELDS or n in schema.PHONE_FIELDS:
                obj = "event" if n in schema.EVENT_FIELDS else "phone"
                return self.error(e.span, f"unknown name '{n}'", Suggestion(n, f"{obj}.{n}"))
            known = [
                *self.symbols,
                "phone",
                "event",
                "tenant",
                *(f"event.{f}" for f in schema.EVENT_FIELDS),
                *(f"phone.{f}" for f in schema.PHONE_FIELDS if f not in schema.PHONE_PII),
                *(f"ip.{f}" for f in schema.IP_FIELDS),
            ]
            return self.error(e.span, f"unknown name '{n}'", self.suggest(n, known))
        sym.used = True
        if sym.kind == "const":
            return self.const(n)
        if sym.kind == "condition":
            return self.condition(n, e.span, ctx)
        if sym.kind == "list":
            return self.error(e.span, f"'{n}' is a list; test membership with 'phone in {n}'")
        if not ctx.aggregates:
            return self.error(e.span, f"a {ctx.what} cannot read aggregates ('{n}')")
        if not self.aggregates.has(n):
            return ir.Error()  # its declaration already has an error
        self.rule_reads.append(n)
        return self.aggregates.value(n)

    def attr(self, e: ast.Attr, ctx: _Ctx) -> ir.Node:
        base = e.obj.name if isinstance(e.obj, ast.Name) else None
        if base == "phone":
            t = schema.PHONE_FIELDS.get(e.name)
            if t is None:
                return self.error(
                    e.span,
                    f"unknown field 'phone.{e.name}'",
                    self.suggest(e.name, schema.PHONE_FIELDS),
                )
            if ctx.reason and e.name in schema.PHONE_PII:
                return self.error(
                    e.span,
                    f"reasons are logged: do not put the raw number (phone.{e.name}) in them;"
                    " use {phone.masked}",
                )
            return ir.Fact(f"phone.{e.name}", t)
        if base == "event":
            if e.name == "attributes":
                return self.error(e.span, 'event.attributes is read by key: event.attributes["k"]')
            t = schema.EVENT_FIELDS.get(e.name)
            if t is None:
                return self.error(
                    e.span,
                    f"unknown field 'event.{e.name}'",
                    self.suggest(e.name, schema.EVENT_FIELDS),
                )
            if e.name in schema.LOCAL_TIME_FIELDS:
                self.uses_local_time = True
            return ir.Fact(f"event.{e.name}", t)
        if base == "decision" and "decision" not in self.symbols:
            if not ctx.decision:
                return self.error(
                    e.span,
                    f"a {ctx.what} cannot read the decision being made (decision.{e.name});"
                    " only an aggregate's own where filter reads it, to count past decisions",
                )
            t = schema.DECISION_FIELDS.get(e.name)
            if t is None:
                return self.error(
                    e.span,
                    f"unknown field 'decision.{e.name}'",
                    self.suggest(e.name, schema.DECISION_FIELDS),
                )
            return ir.Fact(f"decision.{e.name}", t)
        if base == "ip":
            t = schema.IP_FIELDS.get(e.name)
            if t is None:
                return self.error(
                    e.span,
                    f"unknown field 'ip.{e.name}'",
                    self.suggest(e.name, schema.IP_FIELDS),
                )
            self.uses_ip = True
            return ir.Fact(f"ip.{e.name}", t)
        obj = self.expr(e.obj, ctx)
        if obj.type is Type.ERROR:
            return obj
        return self.error(e.span, f"{_a(obj.type)} has no field '{e.name}'")

    def index(self, e: ast.Index, ctx: _Ctx) -> ir.Node:
        if _dotted(e.obj) != "event.attributes":
            obj = self.expr(e.obj, ctx)
            if obj.type is Type.ERROR:
                return obj
            return self.error(e.span, f"{_a(obj.type)} cannot be indexed")
        key = self.expr(e.key, ctx)
        if isinstance(key, ir.Lit) and key.type is Type.STR:
            assert isinstance(key.value, str)
            return ir.EventAttr(key.value)
        if key.type is Type.ERROR:
            return key
        return self.error(e.key.span, "an attribute key must be a constant string")

    def method(self, e: ast.Method, ctx: _Ctx) -> ir.Node:
        if isinstance(e.obj, ast.Name):
            sym = self.symbols.get(e.obj.name)
            if sym is not None and sym.kind == "aggregate":
                return self.agg_method(e, e.obj.name, sym, ctx)
            if sym is not None and sym.kind == "list":
                sym.used = True
                if e.name != "label":
                    return self.error(
                        e.span, f"a list has one helper, label(\"name\"), not '{e.name}'"
                    )
                args = self.args(e, (Type.STR,), ctx)
                if args is None:
                    return ir.Error()
                if not isinstance(args[0], ir.Lit):
                    return self.error(e.args[0].span, "a label name must be a constant string")
                assert isinstance(args[0].value, str)
                self.label_uses.append(LabelUse(e.obj.name, args[0].value, e.args[0].span))
                return ir.ListLabel(e.obj.name, args[0].value)
            if e.obj.name == "event":
                return self.event_method(e, ctx)
            if e.obj.name == "phone":
                sig = schema.PHONE_METHODS.get(e.name)
                if sig is None:
                    return self.error(
                        e.span,
                        f"unknown helper 'phone.{e.name}' (phone has starts_with and prefix)",
                    )
                args = self.args(e, sig[0], ctx)
                if args is None:
                    return ir.Error()
                if e.name == "prefix":
                    if ctx.reason:
                        return self.error(
                            e.span, "reasons are logged: use {phone.masked}, not phone.prefix()"
                        )
                    return ir.StrCall("phone_prefix", tuple(args), Type.STR, args[0].nullable)
                return self.phone_starts_with(e, args[0])
        obj = self.expr(e.obj, ctx)
        if obj.type is Type.ERROR:
            return obj
        if obj.type is not Type.STR or e.name not in schema.STRING_METHODS:
            return self.error(
                e.span,
                f"{_a(obj.type)} has no helper '{e.name}'",
                self.suggest(e.name, schema.STRING_METHODS) if obj.type is Type.STR else None,
            )
        params, result = schema.STRING_METHODS[e.name]
        args = self.args(e, params, ctx)
        if args is None:
            return ir.Error()
        all_args = (obj, *args)
        if e.name == "matches":
            return self.matches(e, obj, args[0], result)
        if all(isinstance(a, ir.Lit) for a in all_args):
            return _fold_string_call(e.name, all_args, result)
        return ir.StrCall(e.name, all_args, result, any(a.nullable for a in all_args))

    def event_method(self, e: ast.Method, ctx: _Ctx) -> ir.Node:
        """``event.number("amount")``: an attribute read as a decimal, unknown when it is
        absent or not a number."""
        if e.name != "number":
            return self.error(
                e.span,
                f"unknown helper 'event.{e.name}' (event has number(\"key\"): an attribute"
                " read as a decimal)",
                self.suggest(e.name, ("number",)),
            )
        args = self.args(e, (Type.STR,), ctx)
        if args is None:
            return ir.Error()
        if not isinstance(args[0], ir.Lit):
            return self.error(e.args[0].span, "an attribute key must be a constant string")
        assert isinstance(args[0].value, str)
        return ir.EventNumber(args[0].value)

    def phone_starts_with(self, e: ast.Method, arg: ir.Node) -> ir.Node:
        """``phone.starts_with("+861703")``: the prefix must be a constant E.164 prefix.

        Without the ``+`` it was a trap: the E.164 number was compared, so "1703" never
        matched a Chinese 1703 number and did match +1 703 (a US number)."""
        span = e.args[0].span
        if not isinstance(arg, ir.Lit):
            return self.error(span, 'phone.starts_with() needs a constant such as "+861703"')
        text = str(arg.value)
        if not text.startswith("+"):
            shown = text[:20]
            return self.error(
                span,
                f'phone.starts_with("{shown}") is ambiguous: it compares the E.164 number, so'
                f' "{shown}" would be read with its country code and never match a national'
                f' "{shown}" (+86{shown}...); write phone.starts_with("+{shown}") if it begins'
                f' with the country code, or phone.national_number.starts_with("{shown}")',
            )
        if not text[1:].isdigit():
            return self.error(span, f'"{text[:20]}" is not a phone-number prefix (+ and digits)')
        return ir.StrCall("phone_starts_with", (arg,), Type.BOOL)

    def matches(self, e: ast.Method, obj: ir.Node, arg: ir.Node, result: Type) -> ir.Node:
        if not isinstance(arg, ir.Lit):
            return self.error(e.args[0].span, "matches() needs a constant pattern")
        pattern = str(arg.value)
        limit = self.options.max_pattern_chars
        if len(pattern) > limit:
            return self.error(
                e.args[0].span, f"a pattern holds at most {limit} characters, not {len(pattern)}"
            )
        try:
            program = compile_pattern(pattern).programsize
        except PatternError as err:
            backref = _BACKREFERENCE.search(pattern)
            if backref is not None:
                return self.error(
                    e.args[0].span,
                    f"invalid regular expression: RE2 has no backreferences ({backref.group()}):"
                    " it matches in linear time, so it cannot refer back to a group; list the"
                    " repeated text, or test it another way",
                )
            # RE2's reason can quote the whole pattern: keep the message short.
            return self.error(e.args[0].span, f"invalid regular expression: {str(err)[:120]}")
        if isinstance(obj, ir.Lit):
            return ir.Lit(search(pattern, str(obj.value)), Type.BOOL)
        if pattern not in self.patterns and len(self.patterns) >= self.options.max_patterns:
            return self.error(
                e.args[0].span,
                f"a policy uses at most {self.options.max_patterns} different patterns"
                " (each is compiled when the policy loads)",
            )
        self.patterns.setdefault(pattern, len(self.patterns))
        self.programs[pattern] = program
        node = ir.StrCall("matches", (obj, arg), result, obj.nullable)
        self.match_sites.setdefault(node, e.span)
        return node

    def agg_method(self, e: ast.Method, name: str, sym: _Symbol, ctx: _Ctx) -> ir.Node:
        sym.used = True
        if e.name != "ago":
            return self.error(e.span, f"an aggregate has one helper, ago(duration), not '{e.name}'")
        if not ctx.aggregates:
            return self.error(e.span, f"a {ctx.what} cannot read aggregates ('{name}')")
        args = self.args(e, (Type.DUR,), ctx)
        if args is None:
            return ir.Error()
        if not isinstance(args[0], ir.Lit):
            return self.error(e.args[0].span, "ago() needs a constant duration")
        assert isinstance(args[0].value, int)
        node = self.aggregates.variant(name, args[0].value, e.span)
        if isinstance(node, ir.AggValue):
            self.rule_reads.append(node.agg_id)
        return node

    def call(self, e: ast.Call, ctx: _Ctx) -> ir.Node:
        if e.func not in schema.FUNCTIONS:
            return self.error(
                e.span,
                f"unknown function '{e.func}' (functions: "
                + ", ".join(schema.FUNCTIONS.values())
                + ")",
                self.suggest(e.func, schema.FUNCTIONS),
            )
        if not ctx.aggregates:
            return self.error(e.span, f"a {ctx.what} cannot read aggregates ({e.func})")
        if e.func == "age":
            return self.age(e)
        if len(e.args) != 2:
            return self.error(e.span, "sustained(condition, duration) takes 2 arguments")
        cond = self.expr(e.args[0], ctx)
        dur = self.expr(e.args[1], ctx)
        if not self.expect(cond, Type.BOOL, e.args[0].span, "the condition of sustained()"):
            return ir.Error()
        if not isinstance(dur, ir.Lit) or dur.type is not Type.DUR:
            if dur.type is Type.ERROR:
                return dur
            return self.error(e.args[1].span, "sustained() needs a constant duration")
        if cond.type is Type.ERROR:
            return cond
        ids = sorted({n.agg_id for n in ir.walk(cond) if isinstance(n, ir.AggValue)})
        if not ids:
            return self.error(
                e.args[0].span, "sustained() needs a condition that reads an aggregate"
            )
        if any("@" in i for i in ids):
            return self.error(e.args[0].span, "sustained() cannot contain ago()")
        steps = {self.aggregates.window(i).size_s for i in ids}
        if len(steps) != 1:
            return self.error(
                e.args[0].span, "sustained() needs aggregates that share one window size"
            )
        step = steps.pop()
        assert isinstance(dur.value, int)
        if dur.value < step or dur.value % step:
            return self.error(
                e.args[1].span,
                f"sustained() over {format_duration(dur.value)} must be a whole multiple of the"
                f" {format_duration(step)} window",
            )
        count = dur.value // step
        if count > self.options.max_sustained_steps:
            return self.error(
                e.args[1].span,
                f"sustained() over {format_duration(dur.value)} of {format_duration(step)}"
                f" windows reads {count} windows; at most {self.options.max_sustained_steps}"
                " (use a longer window)",
            )
        size = len(ir.walk(cond))
        if size * count > self.options.max_rule_nodes:
            return self.error(
                e.span,
                f"sustained() would expand to {size * count} expression nodes; at most"
                f" {self.options.max_rule_nodes} (simplify the condition or use fewer windows)",
            )
        terms: list[ir.Node] = [cond]
        for k in range(1, count):
            mapping: dict[str, ir.Node] = {}
            for i in ids:
                variant = self.aggregates.variant(i, k * step, e.span)
                if isinstance(variant, ir.Error):
                    return variant
                mapping[i] = variant
                assert isinstance(variant, ir.AggValue)
                self.rule_reads.append(variant.agg_id)
            terms.append(_substitute(cond, mapping))
        return fold_and(terms)

    def age(self, e: ast.Call) -> ir.Node:
        """``age(per number)``: how long ago this tenant first saw the number (device, ip,
        app), this event included, so a number seen for the first time is 0s old."""
        if len(e.args) != 1 or not isinstance(e.args[0], ast.PerRef):
            return self.error(e.span, "age() takes one key: age(per number), age(per device), ...")
        key = self.per_key(e.args[0])
        if key is None:
            return ir.Error()
        kind, arg = key
        if kind not in schema.AGE_KEYS or (arg and kind is not KeyKind.ATTRIBUTE):
            shown = kind.value + (f"/{arg}" if arg else "")
            return self.error(
                e.args[0].span,
                'age() is kept per number, device, ip, app or attribute "NAME", not per ' + shown,
            )
        node = self.aggregates.age(kind, arg, e.span)
        if isinstance(node, ir.AggValue):
            self.rule_reads.append(node.agg_id)
        return node

    def args(self, e: ast.Method, params: tuple[Type, ...], ctx: _Ctx) -> list[ir.Node] | None:
        if len(e.args) != len(params):
            self.error(e.span, f"{e.name}() takes {len(params)} argument(s), got {len(e.args)}")
            return None
        out = []
        ok = True
        for a, want in zip(e.args, params, strict=True):
            node = self.expr(a, ctx)
            ok = self.expect(node, want, a.span, f"the argument of {e.name}()") and ok
            out.append(node)
        if not ok or any(n.type is Type.ERROR for n in out):
            return None
        return out

    def set_lit(self, e: ast.SetLit, ctx: _Ctx) -> ir.Node:
        if any(isinstance(i, ast.StrLit) for i in e.items) or all(
            self.bare_word(i) for i in e.items
        ):
            bare = [i for i in e.items if isinstance(i, ast.Name) and self.bare_word(i)]
            for word in bare:
                self.unquoted(word)
            if bare:
                return ir.Error()
        items = [self.expr(i, ctx) for i in e.items]
        if any(i.type is Type.ERROR for i in items):
            return ir.Error()
        if not items:
            return self.error(e.span, "an empty set never matches")
        if len(items) > self.options.max_set_items:
            return self.error(
                e.span, f"a set holds at most {self.options.max_set_items} items, not {len(items)}"
            )
        kinds = {i.type for i in items}
        if len(kinds) != 1 or not kinds <= {Type.STR, Type.INT}:
            return self.error(e.span, "a set holds only strings or only ints")
        for i, src in zip(items, e.items, strict=True):
            if not isinstance(i, ir.Lit):
                return self.error(src.span, "set items must be constants")
        kind = kinds.pop()
        values = frozenset(i.value for i in items if isinstance(i, ir.Lit))
        return ir.Lit(values, Type.SET_STR if kind is Type.STR else Type.SET_INT)  # type: ignore[arg-type]

    def membership(self, e: ast.In, ctx: _Ctx) -> ir.Node:
        if isinstance(e.right, ast.StrLit) and e.right.is_plain:
            sym = self.symbols.get(e.right.value)
            if sym is not None and sym.kind == "list":
                sym.used = True
                name = e.right.value
                return self.error(
                    e.right.span,
                    f"{e.right.raw} is a string; a list is named without quotes:"
                    f" {'phone' if _dotted(e.left) == 'phone' else '...'} in {name}",
                    Suggestion(e.right.raw, name),
                )
        if isinstance(e.right, ast.Name):
            sym = self.symbols.get(e.right.name)
            if sym is not None and sym.kind == "list":
                sym.used = True
                if isinstance(e.left, ast.Name) and e.left.name == "phone":
                    value: ir.Node = ir.Fact("phone.e164", Type.STR)
                    self.list_uses.append(ListUse(e.right.name, NUMBERS, e.span))
                else:
                    value = self.expr(e.left, ctx)
                    if not self.expect(value, Type.STR, e.left.span, "a list lookup"):
                        return ir.Error()
                    if value.type is Type.ERROR:
                        return value
                    if isinstance(value, ir.Fact) and value.path in ("phone.e164", "event.ip"):
                        subject = NUMBERS if value.path == "phone.e164" else NETWORKS
                        self.list_uses.append(ListUse(e.right.name, subject, e.span))
                return ir.InList(value, e.right.name, nullable=value.nullable)
        left = self.expr(e.left, ctx)
        right = self.expr(e.right, ctx)
        if Type.ERROR in (left.type, right.type):
            return ir.Error()
        if right.type not in (Type.SET_STR, Type.SET_INT):
            return self.error(
                e.right.span,
                f"the right side of 'in' must be a list or a set, got {right.type.value}",
            )
        elem = Type.STR if right.type is Type.SET_STR else Type.INT
        if left.type is not elem:
            return self.error(e.span, f"cannot look for {_a(left.type)} in {_a(right.type)}")
        assert isinstance(right, ir.Lit)
        assert isinstance(right.value, frozenset)
        if isinstance(left, ir.Lit):
            return ir.Lit(left.value in right.value, Type.BOOL)
        return ir.InSet(left, right.value, nullable=left.nullable)

    def compare(self, op: str, le: ast.Expr, re: ast.Expr, span: ast.Span, ctx: _Ctx) -> ir.Node:
        bare = le if self.bare_word(le) else re if self.bare_word(re) else None
        if isinstance(bare, ast.Name) and op in ("==", "!="):
            # `event.scene == register`: a string without its quotes, most likely.
            other = re if bare is le else le
            other_node = self.expr(other, ctx)
            if other_node.type is Type.STR:
                return self.unquoted(bare)
            bare_node = self.expr(bare, ctx)
            left, right = (bare_node, other_node) if bare is le else (other_node, bare_node)
        else:
            left = self.expr(le, ctx)
            right = self.expr(re, ctx)
        if Type.ERROR in (left.type, right.type):
            return ir.Error()
        for fact, lit, lit_span in ((left, right, re.span), (right, left, le.span)):
            if (
                isinstance(fact, ir.Fact)
                and fact.path == "decision.action"
                and isinstance(lit, ir.Lit)
                and lit.value not in schema.ACTIONS
            ):
                return self.error(
                    lit_span,
                    f"decision.action is one of {', '.join(schema.ACTIONS)}, never {lit.value!r}",
                    self.suggest(str(lit.value), schema.ACTIONS),
                )
        if {left.type, right.type} == {Type.DUR, Type.INT}:
            number = left if left.type is Type.INT else right
            if isinstance(number, ir.Lit) and isinstance(number.value, int):
                as_duration = format_duration(abs(number.value))
                what = "a duration"
                duration = right if number is left else left
                if isinstance(duration, ir.AggValue) and duration.agg_id.startswith("age("):
                    what = f"{duration.agg_id} is a duration"
                else:
                    what = "cannot compare a duration with an int"
                return self.error(
                    span,
                    f"{what}: write {as_duration} ({number.value} seconds), not {number.value}",
                    Suggestion(str(abs(number.value)), as_duration),
                )
        if {left.type, right.type} == {Type.INT, Type.DEC}:
            # An int against a decimal compares as decimals: scale the int side.
            left, right = self.promote(left, le.span), self.promote(right, re.span)
            if Type.ERROR in (left.type, right.type):
                return ir.Error()
        if left.type is not right.type:
            return self.error(span, f"cannot compare {_a(left.type)} with {_a(right.type)}")
        if op not in ("==", "!=") and left.type not in _ORDERED:
            return self.error(span, f"'{op}' compares numbers or durations, not {left.type.value}s")
        return fold_cmp(op, left, right)

    def bare_word(self, e: ast.Expr) -> bool:
        """A name that is nothing: no declaration, no fact."""
        return (
            isinstance(e, ast.Name)
            and e.name not in self.symbols
            and e.name not in ("phone", "event", "tenant")
            and e.name not in schema.EVENT_FIELDS
            and e.name not in schema.PHONE_FIELDS
        )

    def unquoted(self, e: ast.Name) -> ir.Error:
        """The error for a bare word where a string is wanted: quote it (or, when a
        constant is spelt alike, that one)."""
        const = self.suggest(e.name, [n for n, s in self.symbols.items() if s.kind == "const"])
        also = f" (or the constant {const.replacement})" if const is not None else ""
        return self.error(
            e.span,
            f"unknown name '{e.name}': a string is written in quotes{also}",
            Suggestion(e.name, f'"{e.name}"'),
        )

    def promote(self, node: ir.Node, span: ast.Span) -> ir.Node:
        """An int as a decimal (scaled to millionths); decimals pass through."""
        if node.type is not Type.INT:
            return node
        return self.fold(span, "*", node, ir.Lit(ir.DECIMAL_SCALE, Type.INT), Type.DEC)

    def fold(self, span: ast.Span, op: str, left: ir.Node, right: ir.Node, t: Type) -> ir.Node:
        try:
            return fold_arith(op, left, right, t)
        except FoldError as err:
            return self.error(span, str(err))

    def decimal(self, text: str, span: ast.Span) -> ir.Node:
        whole, _, frac = text.partition(".")
        if len(frac) > ir.DECIMAL_PLACES:
            return self.error(
                span,
                f"decimal {text[:30]} has {len(frac)} decimal places; at most {ir.DECIMAL_PLACES}",
            )
        if len(whole) > 13:  # millionths of it must fit in 64 bits
            return self.error(span, f"decimal {text[:30]} is out of range")
        value = int(whole) * ir.DECIMAL_SCALE + int(frac.ljust(ir.DECIMAL_PLACES, "0"))
        if not in_range(value):
            return self.error(span, f"decimal {text[:30]} is out of range")
        return ir.Lit(value, Type.DEC)

    def arith(self, e: ast.BinOp, ctx: _Ctx) -> ir.Node:
        left = self.expr(e.left, ctx)
        right = self.expr(e.right, ctx)
        if Type.ERROR in (left.type, right.type):
            return ir.Error()
        op, pair = e.op, (left.type, right.type)
        if op == "/" and isinstance(right, ir.Lit) and right.value == 0:
            return self.error(e.right.span, "division by zero")
        if op == "/" and not ctx.reason and any(isinstance(n, ir.AggValue) for n in ir.walk(right)):
            self.warn(
                e.right.span,
                "this divisor reads an aggregate and can be 0, which makes the division"
                " unknown (the rule then goes to its on_error); compare without dividing,"
                " e.g. 'a > 5 * b' instead of 'a / b > 5'",
            )
        numbers = {Type.INT, Type.DEC}
        if pair == (Type.INT, Type.INT) and op != "/":
            return self.fold(e.span, op, left, right, Type.INT)
        if left.type in numbers and right.type in numbers:
            # Decimal arithmetic on millionths: see ir.Type.DEC for the rounding.
            if op in "+-":
                a, b = self.promote(left, e.left.span), self.promote(right, e.right.span)
                return self.fold(e.span, op, a, b, Type.DEC)
            if op == "*":
                return self.fold(
                    e.span, "d*" if pair == (Type.DEC, Type.DEC) else "*", left, right, Type.DEC
                )
            if right.type is Type.INT:  # x / int: the numerator as a decimal, floor-divided
                return self.fold(e.span, "/", self.promote(left, e.left.span), right, Type.DEC)
            return self.fold(e.span, "d/", self.promote(left, e.left.span), right, Type.DEC)
        if (
            (op in "+-" and pair == (Type.DUR, Type.DUR))
            or (op == "*" and Type.DUR in pair and Type.INT in pair)
            or (op == "/" and pair == (Type.DUR, Type.INT))
        ):
            return self.fold(e.span, op, left, right, Type.DUR)
        return self.error(e.span, f"cannot apply '{op}' to {_a(left.type)} and {_a(right.type)}")


# \1, (?P=name), \k<name>: what other engines call a backreference.
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=\w+\)|\\k<\w+>")


def _stray_keys(d: ast.Aggregate) -> list[str]:
    """``count(per number, app, over 1h)``: key names after a 'per', parsed as fields."""
    if not d.per:
        return []
    first_per = d.per[0].span
    after = [a for a in d.args if (a.span.line, a.span.column) > (first_per.line, first_per.column)]
    if after and all(isinstance(a, ast.Name) and a.name in schema.KEY_KINDS for a in after):
        return [a.name for a in after if isinstance(a, ast.Name)]
    return []


def _clause_word(c: ast.Clause) -> str:
    return {
        ast.When: "when",
        ast.Then: "then",
        ast.Risk: "risk",
        ast.Tags: "tags",
        ast.Reason: "reason",
        ast.OnError: "on_error",
        ast.Priority: "priority",
        ast.Score: "score",
    }[type(c)]


def _dotted(e: ast.Expr) -> str:
    if isinstance(e, ast.Name):
        return e.name
    if isinstance(e, ast.Attr):
        inner = _dotted(e.obj)
        return f"{inner}.{e.name}" if inner else ""
    return ""


def _fold_string_call(name: str, args: tuple[ir.Node, ...], result: Type) -> ir.Node:
    vals = [a.value for a in args if isinstance(a, ir.Lit)]
    s = vals[0]
    assert isinstance(s, str)
    match name:
        case "lower":
            return ir.Lit(s.lower(), result)
        case "upper":
            return ir.Lit(s.upper(), result)
        case "starts_with":
            return ir.Lit(s.startswith(str(vals[1])), result)
        case "ends_with":
            return ir.Lit(s.endswith(str(vals[1])), result)
    return ir.Lit(str(vals[1]) in s, result)


def _substitute(node: ir.Node, mapping: dict[str, ir.Node]) -> ir.Node:
    """``node`` with aggregate reads replaced (depth is bounded by the parser's guard)."""
    match node:
        case ir.AggValue(agg_id=i):
            return mapping.get(i, node)
        case ir.InList():
            return replace(node, value=_substitute(node.value, mapping))
        case ir.InSet():
            return replace(node, value=_substitute(node.value, mapping))
        case ir.Not():
            return replace(node, operand=_substitute(node.operand, mapping))
        case ir.Neg():
            return replace(node, operand=_substitute(node.operand, mapping))
        case ir.BoolOp():
            return replace(node, operands=tuple(_substitute(o, mapping) for o in node.operands))
        case ir.Cmp():
            return replace(
                node, left=_substitute(node.left, mapping), right=_substitute(node.right, mapping)
            )
        case ir.Arith():
            return replace(
                node, left=_substitute(node.left, mapping), right=_substitute(node.right, mapping)
            )
        case ir.StrCall():
            return replace(node, args=tuple(_substitute(a, mapping) for a in node.args))
        case ir.Named():
            return replace(node, node=_substitute(node.node, mapping))
    return node
