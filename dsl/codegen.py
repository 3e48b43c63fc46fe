"""Checked policy -> readable, deterministic Python source, compiled once.

The module it emits defines ``plan(facts, lists)``, ``evaluate(facts, values, lists)`` and
``explain(...)`` (the same body plus a trace). Conditions are straight-line expressions:
plain Python where nothing can be unknown, Kleene three-valued logic spelled out with
walrus temporaries where an aggregate can be unknown. User text reaches the source only
through ``repr()``; objects (aggregate specs) are passed in the namespace, not spelled out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dsl import ir
from dsl.aggregates import AggKind, AggregateSpec, KeyKind
from dsl.durations import format_duration
from dsl.ir import Type
from dsl.runtime import fmt

_ACTION = {"allow": "ALLOW", "review": "REVIEW", "block": "BLOCK"}


@dataclass
class Generated:
    """``main`` (constants, plan, evaluate) and ``explain``, compiled separately: explain
    is as long as evaluate and rarely used, so it is compiled on first use."""

    main: str
    explain: str
    namespace: dict[str, object]

    @property
    def source(self) -> str:
        return self.main + self.explain


@dataclass
class _Module:
    consts: list[str] = field(default_factory=list)  # module-level set constants
    const_names: dict[frozenset[object], str] = field(default_factory=dict)

    def set_const(self, values: frozenset[int] | frozenset[str]) -> str:
        key: frozenset[object] = frozenset(values)
        if key not in self.const_names:
            name = f"SET_{len(self.const_names)}"
            self.const_names[key] = name
            items = ", ".join(sorted(repr(v) for v in values))
            self.consts.append(f"{name} = frozenset(({items},))")
        return self.const_names[key]


class _Expr:
    """Emits one expression; temporaries are numbered per function so output is stable."""

    def __init__(
        self,
        module: _Module,
        agg_vars: dict[str, str],
        tmp_prefix: str = "_t",
        member_vars: frozenset[str] = frozenset(),
    ) -> None:
        self.module = module
        self.agg_vars = agg_vars
        self.prefix = tmp_prefix
        # Lists whose `phone in LIST` was looked up once at the top of the function.
        self.member_vars = member_vars
        self.n = 0

    def tmp(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n}"

    def gen(self, node: ir.Node) -> str:
        match node:
            case ir.Lit(value=v):
                if isinstance(v, frozenset):
                    return self.module.set_const(v)
                return repr(v)
            case ir.Fact(path=p):
                return _fact(p)
            case ir.EventAttr(key=k):
                return f"event.attributes.get({k!r}, '')"
            case ir.AggValue(agg_id=i):
                return self.agg_vars[i]
            case ir.ListLabel(list_name=n, label=lab):
                return f"label(l_{n}, phone.e164, {lab!r})"
            case ir.InList(value=ir.Fact(path="phone.e164"), list_name=n) if n in self.member_vars:
                return f"in_{n}"
            case ir.InList(value=v, list_name=n):
                return self.wrap([v], lambda a: f"{a[0]} in l_{n}")
            case ir.InSet(value=v, items=items):
                s = self.module.set_const(items)
                return self.wrap([v], lambda a: f"{a[0]} in {s}")
            case ir.Not(operand=o):
                return self.wrap([o], lambda a: f"not {a[0]}")
            case ir.BoolOp():
                return self.boolop(node)
            case ir.Cmp(op=op, left=lf, right=rt):
                return self.wrap([lf, rt], lambda a: f"{a[0]} {op} {a[1]}")
            case ir.Arith(op="/", left=lf, right=rt) if node.nullable:
                return f"div({self.gen(lf)}, {self.gen(rt)})"
            case ir.Arith(op=op, left=lf, right=rt):
                pyop = "//" if op == "/" else op
                return self.wrap([lf, rt], lambda a: f"{a[0]} {pyop} {a[1]}")
            case ir.StrCall():
                return self.strcall(node)
            case ir.Neg(operand=o):
                return self.wrap([o], lambda a: f"-{a[0]}")
        raise AssertionError(f"cannot generate {type(node).__name__}")

    def wrap(self, operands: list[ir.Node], body: Callable[[list[str]], str]) -> str:
        """``body(args)`` in parentheses, or unknown if any nullable operand is unknown."""
        if not any(o.nullable for o in operands):
            return "(" + body([self.gen(o) for o in operands]) + ")"
        names: list[str] = []
        checks: list[str] = []
        for o in operands:
            if isinstance(o, ir.AggValue):
                # Already a local variable: test it directly, no temporary needed.
                checks.append(f"{self.agg_vars[o.agg_id]} is None")
                names.append(self.agg_vars[o.agg_id])
            elif o.nullable:
                t = self.tmp()
                checks.append(f"({t} := {self.gen(o)}) is None")
                names.append(t)
            else:
                names.append(self.gen(o))
        return f"(None if {' or '.join(checks)} else {body(names)})"

    def boolop(self, node: ir.BoolOp) -> str:
        if not node.nullable:
            return "(" + f" {node.op} ".join(self.gen(o) for o in node.operands) + ")"
        # Kleene: one false operand decides `and` (one true decides `or`) even next to an
        # unknown one; otherwise any unknown operand makes the whole unknown.
        decisive = "False" if node.op == "and" else "True"
        other = "True" if node.op == "and" else "False"
        branches: list[str] = []
        unknowns: list[str] = []
        for o in node.operands:
            var = self.simple_unknown(o)
            if var is not None:
                # `hits > 5` where only `hits` can be unknown: test it in place, no temporary.
                assert isinstance(o, ir.Cmp)
                test = f"{self.gen(o.left)} {o.op} {self.gen(o.right)}"
                test = f"not ({test})" if node.op == "and" else f"({test})"
                branches.append(f"{decisive} if {var} is not None and {test} else")
                unknowns.append(f"{var} is None")
            elif o.nullable:
                t = self.tmp()
                branches.append(f"{decisive} if ({t} := {self.gen(o)}) is {decisive} else")
                unknowns.append(f"{t} is None")
            else:
                test = f"not {self.gen(o)}" if node.op == "and" else self.gen(o)
                branches.append(f"{decisive} if {test} else")
        tail = f"None if {' or '.join(unknowns)} else {other}"
        return "(" + " ".join(branches) + " " + tail + ")"

    def simple_unknown(self, node: ir.Node) -> str | None:
        """The one aggregate variable that makes a comparison unknown, if that is all."""
        if not isinstance(node, ir.Cmp):
            return None
        sides = [s for s in (node.left, node.right) if s.nullable]
        if len(sides) == 1 and isinstance(sides[0], ir.AggValue):
            return self.agg_vars[sides[0].agg_id]
        return None

    def strcall(self, node: ir.StrCall) -> str:
        a = node.args
        if node.func == "phone_starts_with":
            if isinstance(a[0], ir.Lit):
                text = str(a[0].value)
                return f"phone.e164.startswith({(text if text.startswith('+') else '+' + text)!r})"
            return f"phone_starts_with(phone, {self.gen(a[0])})"
        if node.func == "phone_prefix":
            return self.wrap([a[0]], lambda x: f"phone.digits[:{x[0]}]")
        forms = {
            "lower": lambda x: f"{x[0]}.lower()",
            "upper": lambda x: f"{x[0]}.upper()",
            "starts_with": lambda x: f"{x[0]}.startswith({x[1]})",
            "ends_with": lambda x: f"{x[0]}.endswith({x[1]})",
            "contains": lambda x: f"{x[1]} in {x[0]}",
        }
        return self.wrap(list(a), forms[node.func])


def _fact(path: str) -> str:
    match path:
        case "tenant":
            return "facts.tenant"
        case "phone.masked":
            return "masked(phone.e164)"
        case "event.local_hour":
            return "local_hour"
        case "event.local_weekday":
            return "local_weekday"
        case "event.occurred_at":
            return "int(event.occurred_at)"
    return path


def _ident(agg_id: str) -> str:
    return "a_" + agg_id.replace("@", "_ago_")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "", indent: int = 0) -> None:
        self.lines.append(("    " * indent + text) if text else "")


def generate(policy: ir.CheckedPolicy) -> Generated:
    module = _Module()
    namespace: dict[str, object] = {}
    body = _Writer()
    spec_names = {}
    for i, agg in enumerate(policy.aggregates):
        spec_names[agg.spec.id] = f"AGG_{i}"
        namespace[f"AGG_{i}"] = agg.spec
    read_ids = list(dict.fromkeys(i for r in policy.rules for i in r.reads))
    agg_vars = {i: _ident(i) for i in read_ids}
    list_names = [name for name, *_ in policy.lists]

    _gen_plan(body, policy, module, spec_names, list_names)
    _gen_evaluate(body, policy, module, agg_vars, read_ids, list_names, explain=False)
    tail = _Writer()
    _gen_evaluate(tail, policy, module, agg_vars, read_ids, list_names, explain=True)

    head = _Writer()
    head("# Generated by ringfence from the policy of tenant " + repr(policy.tenant) + ".")
    head("# Do not edit: change the .rf files and recompile.")
    head("# Aggregate specs AGG_n and the helpers below are passed in the namespace.")
    head()
    head(f"TIMEZONE = {policy.timezone!r}")
    for agg in policy.aggregates:
        head(f"# {spec_names[agg.spec.id]}: {_describe_spec(agg.spec)}")
    head()
    for c in module.consts:
        head(c)
    if module.consts:
        head()
    main = "\n".join(head.lines + body.lines).rstrip() + "\n"
    explain = "\n".join(tail.lines).rstrip() + "\n"
    return Generated(main, explain, namespace)


def _describe_spec(spec: AggregateSpec) -> str:
    what = spec.kind.value + (f"({spec.field})" if spec.field else "")
    key = spec.key.value + (f" {spec.key_arg}" if spec.key_arg else "")
    w = spec.window
    window = "today" if w.calendar_day else format_duration(w.size_s)
    ago = f", {format_duration(w.offset_s)} ago" if w.offset_s else ""
    return f"{spec.id} = {what} per {key} over {window}{ago}"


def _gen_plan(
    w: _Writer,
    policy: ir.CheckedPolicy,
    module: _Module,
    spec_names: dict[str, str],
    list_names: list[str],
) -> None:
    w()
    w("def plan(facts, lists):")
    w("phone = facts.phone", 1)
    w("event = facts.event", 1)
    local = {"event.local_hour", "event.local_weekday"}
    if any(
        isinstance(n, ir.Fact) and n.path in local
        for a in policy.aggregates
        if a.where is not None
        for n in ir.walk(a.where)
    ):
        w("local_hour, local_weekday = local_time(event.occurred_at, TIMEZONE)", 1)
    for n in list_names:
        w(f"l_{n} = lists.get({n!r}, EMPTY_LIST)", 1)
    if not policy.aggregates:
        w("return ()", 1)
        return
    w("return (", 1)
    gen = _Expr(module, {}, "_p")
    for agg in policy.aggregates:
        spec = agg.spec
        key, key_ok = _plan_key(spec)
        member, member_ok = _plan_member(spec)
        conds = [c for c in (key_ok, member_ok) if c]
        if agg.where is not None:
            conds.append(gen.gen(agg.where))
        feeds = " and ".join(conds) if conds else "True"
        if spec.window.offset_s:
            feeds = "False"  # a window that ended in the past never takes this event
        w(f"AggregateRef({spec_names[spec.id]}, {key}, {member}, {feeds}),", 2)
    w(")", 1)


def _plan_key(spec: AggregateSpec) -> tuple[str, str]:
    match spec.key:
        case KeyKind.NUMBER:
            return "phone.e164", "phone.e164 != ''"
        case KeyKind.LIST:
            return repr(spec.key_arg), f"(phone.e164 in l_{spec.key_arg})"
        case KeyKind.SEGMENT:
            return "phone.segment_prefix", "phone.segment_prefix != ''"
        case KeyKind.PREFIX:
            n = int(spec.key_arg)
            return f"phone.digits[:{n}]", f"len(phone.digits) >= {n}"
        case KeyKind.DEVICE:
            return "event.device_id", "event.device_id != ''"
        case KeyKind.IP:
            return "event.ip", "event.ip != ''"
        case KeyKind.APP:
            return "event.app_id", "event.app_id != ''"
    return "''", ""


def _plan_member(spec: AggregateSpec) -> tuple[str, str]:
    if spec.kind is AggKind.RUN:
        return "phone.national_number", "phone.national_number != ''"
    if spec.kind is AggKind.COUNT:
        return "''", ""
    f = spec.field
    if f == "phone":
        expr = "phone.e164"
    elif f.startswith("attr:"):
        expr = f"event.attributes.get({f[5:]!r}, '')"
    else:
        expr = f"event.{f}"
    return expr, f"{expr} != ''"


def _gen_evaluate(
    w: _Writer,
    policy: ir.CheckedPolicy,
    module: _Module,
    agg_vars: dict[str, str],
    read_ids: list[str],
    list_names: list[str],
    explain: bool,
) -> None:
    w()
    w()
    w(f"def {'explain' if explain else 'evaluate'}(facts, values, lists):")
    w("phone = facts.phone", 1)
    w("event = facts.event", 1)
    if policy.uses_local_time:
        w("local_hour, local_weekday = local_time(event.occurred_at, TIMEZONE)", 1)
    for n in list_names:
        w(f"l_{n} = lists.get({n!r}, EMPTY_LIST)", 1)
    # `phone in LIST` tends to appear in several rules: look each list up once.
    members = frozenset(
        node.list_name
        for rule in policy.rules
        for part in (rule.condition, *(p for p in rule.reason if not isinstance(p, str)))
        for node in ir.walk(part)
        if isinstance(node, ir.InList)
        and isinstance(node.value, ir.Fact)
        and node.value.path == "phone.e164"
    )
    for n in sorted(members):
        w(f"in_{n} = phone.e164 in l_{n}", 1)
    if read_ids:
        w("get = values.get", 1)
        for i in read_ids:
            w(f"{agg_vars[i]} = get({i!r})", 1)
        w("unknown = " + " or ".join(f"{agg_vars[i]} is None" for i in read_ids), 1)
    else:
        w("unknown = False", 1)
    w("matched = []", 1)
    w("override = False", 1)
    w("trace = []" if explain else "trace = None", 1)
    for rule in policy.rules:
        _gen_rule(w, rule, module, agg_vars, explain, members)
    w("return decide(matched, unknown, override, trace)", 1)


def _gen_rule(
    w: _Writer,
    rule: ir.CheckedRule,
    module: _Module,
    agg_vars: dict[str, str],
    explain: bool,
    members: frozenset[str] = frozenset(),
) -> None:
    gen = _Expr(module, agg_vars, member_vars=members)
    w()
    kind = "shadow rule" if rule.shadow else "rule"
    w(f"# {kind} {rule.name} ({rule.path}:{rule.line})", 1)
    w(f"c = {gen.gen(rule.condition)}", 1)

    def match(action: str) -> str:
        reason = _reason(rule.reason, gen)
        return (
            f"matched.append(Match({rule.name!r}, {_ACTION[action]}, {reason}, {rule.shadow!r},"
            f" {rule.risk!r}, {rule.tags!r}))"
        )

    if explain:
        w("m = False", 1)
    w("if c:", 1)
    w(match(rule.action), 2)
    if rule.override and not rule.shadow:
        w("override = True", 2)
    if explain:
        w("m = True", 2)
    if rule.condition.nullable and rule.on_error != "skip":
        on_unknown = rule.action if rule.on_error == "fire" else rule.on_error
        w("elif c is None:", 1)
        w(f"# unknown condition: on_error {rule.on_error}", 2)
        w(match(on_unknown), 2)
        if explain:
            w("m = True", 2)
    if explain:
        detail = _detail(rule, agg_vars)
        w(f"trace.append(RuleTrace({rule.name!r}, c, m, {detail}))", 1)


def _reason(parts: tuple[str | ir.Node, ...], gen: _Expr) -> str:
    # Constant parts (text and folded constants) merge into one literal.
    merged: list[str | ir.Node] = []
    for p in parts:
        text = p if isinstance(p, str) else _const_text(p)
        if text is not None and merged and isinstance(merged[-1], str):
            merged[-1] += text
        else:
            merged.append(text if text is not None else p)
    pieces: list[str] = []
    for p in merged:
        if isinstance(p, str):
            if p:
                pieces.append(repr(p))
            continue
        code = gen.gen(p)
        if p.type is Type.STR and not p.nullable:
            pieces.append(code)
        elif p.type is Type.DUR:
            pieces.append(f"fmt_duration({code})")
        else:
            pieces.append(f"fmt({code})")
    if not pieces:
        return "''"
    return " + ".join(pieces)


def _const_text(node: ir.Node) -> str | None:
    if not isinstance(node, ir.Lit):
        return None
    if node.type is Type.DUR:
        assert isinstance(node.value, int)
        return format_duration(node.value)
    return fmt(node.value)


def _detail(rule: ir.CheckedRule, agg_vars: dict[str, str]) -> str:
    pieces = [f"{i!r} + '=' + fmt({agg_vars[i]})" for i in rule.reads]
    values = " + ', ' + ".join(pieces) if pieces else "''"
    if rule.condition.nullable:
        note = f"'; condition unknown: on_error {rule.on_error}'"
        return f"{values} + ({note} if c is None else '')"
    return values
