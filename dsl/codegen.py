"""Checked policy -> a Python module built as an ``ast`` tree, checked, compiled once.

Policies are untrusted text, so the generator never pastes text into source. It builds
the module as :mod:`ast` nodes: anything that came from a rule file (names, strings, list
labels, attribute keys, file names) can only ever be a ``Constant`` node, and every
identifier in the tree is one the generator made up (``a_0``, ``l_1``, ``SET_2``).
Before compiling, :func:`dsl.sandbox.verify` walks the tree against an allow-list of node
types, names and attributes; ``ast.unparse`` of the same tree is the readable form the
golden files and ``--explain`` show.

The module defines ``plan(facts, lists)`` and ``evaluate(facts, values, lists, trace)``;
with a ``trace`` list, evaluate also explains itself (one RuleTrace per rule), and
without one it pays only a ``trace is not None`` test per rule. Conditions are
straight-line expressions:
plain Python where nothing can be unknown, Kleene three-valued logic spelled out with
walrus temporaries where an aggregate can be unknown. Each rule runs inside its own
``try``: an exception there becomes that rule's ``on_error``, never a lost decision.
"""

from __future__ import annotations

import ast as py
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dsl import ir
from dsl.aggregates import NUMERIC_KINDS, AggKind, AggregateSpec, KeyKind, is_decimal
from dsl.durations import format_duration
from dsl.ir import Type
from dsl.runtime import fmt, fmt_decimal

_ACTION = {"allow": "ALLOW", "review": "REVIEW", "block": "BLOCK", "": "NO_ACTION"}
# Contexts and operators carry no data, so one instance of each serves the whole tree
# (fewer nodes to build and to verify).
_LOAD, _STORE = py.Load(), py.Store()
_EQ, _NOTEQ, _LT, _LTE, _GT, _GTE = py.Eq(), py.NotEq(), py.Lt(), py.LtE(), py.Gt(), py.GtE()
_IN, _NOTIN, _IS, _ISNOT = py.In(), py.NotIn(), py.Is(), py.IsNot()
_ADD, _SUB, _MULT, _FLOORDIV = py.Add(), py.Sub(), py.Mult(), py.FloorDiv()
_AND, _OR, _NOT, _USUB = py.And(), py.Or(), py.Not(), py.USub()
_CMP: dict[str, py.cmpop] = {"==": _EQ, "!=": _NOTEQ, "<": _LT, "<=": _LTE, ">": _GT, ">=": _GTE}
_ARITH: dict[str, py.operator] = {"+": _ADD, "-": _SUB, "*": _MULT, "/": _FLOORDIV}
_CHECKED = {"+": "add", "-": "sub", "*": "mul", "/": "div", "d*": "dmul", "d/": "ddiv"}


@dataclass
class Generated:
    """The module tree (``plan`` and ``evaluate``) and the objects it refers to by name
    (aggregate specs ``AGG_n``)."""

    main: py.Module
    namespace: dict[str, object]

    @property
    def source(self) -> str:
        """Readable Python for people: golden files and explanations. Never compiled."""
        return py.unparse(self.main) + "\n"


# -- node builders: the only way a tree gets made ---------------------------------------------


def _load(name: str) -> py.Name:
    return py.Name(name, _LOAD)


def _store(name: str) -> py.Name:
    return py.Name(name, _STORE)


def _const(value: object) -> py.Constant:
    assert value is None or isinstance(value, bool | int | float | str), type(value)
    return py.Constant(value)


def _attr(obj: py.expr, *names: str) -> py.expr:
    out = obj
    for n in names:
        out = py.Attribute(out, n, _LOAD)
    return out


def _call(func: str | py.expr, *args: py.expr) -> py.Call:
    return py.Call(_load(func) if isinstance(func, str) else func, list(args), [])


def _assign(name: str, value: py.expr) -> py.Assign:
    return py.Assign([_store(name)], value, lineno=0)


def _is_none(x: py.expr) -> py.Compare:
    return py.Compare(x, [_IS], [_const(None)])


def _is_not_none(x: py.expr) -> py.Compare:
    return py.Compare(x, [_ISNOT], [_const(None)])


def _or(values: Sequence[py.expr]) -> py.expr:
    return values[0] if len(values) == 1 else py.BoolOp(_OR, list(values))


def _and(values: Sequence[py.expr]) -> py.expr:
    return values[0] if len(values) == 1 else py.BoolOp(_AND, list(values))


def _not(x: py.expr) -> py.expr:
    return py.UnaryOp(_NOT, x)


def _if_exp(test: py.expr, body: py.expr, orelse: py.expr) -> py.IfExp:
    return py.IfExp(test, body, orelse)


def _tuple(items: Sequence[py.expr]) -> py.Tuple:
    return py.Tuple(list(items), _LOAD)


def _str_tuple(items: Sequence[str]) -> py.Tuple:
    return _tuple([_const(s) for s in items])


def _function(name: str, params: Sequence[str], body: list[py.stmt]) -> py.FunctionDef:
    args = py.arguments(
        posonlyargs=[],
        args=[py.arg(p) for p in params],
        kwonlyargs=[],
        kw_defaults=[],
        defaults=[],
    )
    return py.FunctionDef(name, args, body, [], None, lineno=0)


@dataclass
class _Module:
    """Module-level constants the functions share: frozensets, numbered in first use."""

    body: list[py.stmt] = field(default_factory=list)
    set_names: dict[frozenset[object], str] = field(default_factory=dict)

    def set_const(self, values: frozenset[int] | frozenset[str]) -> str:
        key: frozenset[object] = frozenset(values)
        if key not in self.set_names:
            name = f"SET_{len(self.set_names)}"
            self.set_names[key] = name
            items = sorted(values, key=repr)
            self.body.append(_assign(name, _call("frozenset", _tuple([_const(v) for v in items]))))
        return self.set_names[key]


@dataclass(frozen=True)
class _Names:
    """Identifiers for the things a policy names: made up here, never from user text."""

    aggs: dict[str, str]  # aggregate id -> local variable
    lists: dict[str, str]  # list name -> local variable
    members: dict[str, str]  # list name -> local variable holding `phone in LIST`
    specs: dict[str, str]  # aggregate id -> module name of its spec
    patterns: dict[str, str]  # regular expression -> module name of its compiled form
    decimals: frozenset[str] = frozenset()  # aggregate ids whose values are decimals


class _Memo:
    """What one generated function computes at most once per call: each named condition
    and each ``matches()`` call (a pattern over one input) that its expressions hold more
    than once. Each gets a local, set to ``PENDING`` when the function starts and to the
    value the first time it is needed, so a condition fifty rules use, or a pattern a
    thousand rules repeat, costs one evaluation, and nothing when no rule reaches it."""

    def __init__(self, roots: Sequence[ir.Node]) -> None:
        seen = memo_sites(roots)
        self.vars: dict[ir.Node, str] = {}
        for n, uses in seen.items():
            if uses > 1:
                prefix = "k_" if isinstance(n, ir.Named) else "m_"
                self.vars[n] = f"{prefix}{len(self.vars)}"

    def init(self) -> list[py.stmt]:
        """``k_0 = m_1 = ... = PENDING`` for the function's prologue."""
        if not self.vars:
            return []
        targets: list[py.expr] = [_store(v) for v in self.vars.values()]
        return [py.Assign(targets, _load("PENDING"), lineno=0)]

    def wrap(self, node: ir.Node, compute: Callable[[], py.expr]) -> py.expr:
        """``node``'s value, computed by ``compute()`` unless it is already known."""
        var = self.vars.get(node)
        if var is None:
            return compute()
        known = py.Compare(_load(var), [_ISNOT], [_load("PENDING")])
        return _if_exp(known, _load(var), py.NamedExpr(_store(var), compute()))


def memoisable(node: ir.Node) -> bool:
    return isinstance(node, ir.Named) or (isinstance(node, ir.StrCall) and node.func == "matches")


def memo_sites(roots: Sequence[ir.Node]) -> Counter[ir.Node]:
    """How often each named condition and ``matches()`` call is written in ``roots``; the
    inside of one is counted once however often it is written (it runs once)."""
    seen: Counter[ir.Node] = Counter()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if memoisable(n):
            seen[n] += 1
            if seen[n] > 1:
                continue
        stack.extend(ir.children(n))
    return seen


_NO_MEMO = _Memo(())


class _Expr:
    """Builds one expression; temporaries are numbered per function so output is stable."""

    def __init__(
        self, module: _Module, names: _Names, tmp_prefix: str = "t_", memo: _Memo = _NO_MEMO
    ) -> None:
        self.module = module
        self.names = names
        self.prefix = tmp_prefix
        self.n = 0
        self.memo = memo

    def tmp(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n}"

    def gen(self, node: ir.Node) -> py.expr:
        match node:
            case ir.Lit(value=v):
                if isinstance(v, frozenset):
                    return _load(self.module.set_const(v))
                return _const(v)
            case ir.Fact(path=p):
                return _fact(p)
            case ir.EventAttr(key=k):
                return _call(_attr(_load("event"), "attributes", "get"), _const(k), _const(""))
            case ir.EventNumber(key=k):
                return _call("number", _attr(_load("event"), "attributes"), _const(k))
            case ir.AggValue(agg_id=i):
                return _load(self.names.aggs[i])
            case ir.ListLabel(list_name=n, label=lab):
                return _call(
                    "label",
                    _load(self.names.lists[n]),
                    _attr(_load("phone"), "e164"),
                    _attr(_load("event"), "ip"),
                    _const(lab),
                )
            case ir.InList(value=ir.Fact(path="phone.e164"), list_name=n) if (
                n in self.names.members
            ):
                return _load(self.names.members[n])
            case ir.InList(value=v, list_name=n):
                lst = _load(self.names.lists[n])
                return self.wrap([v], lambda a: py.Compare(a[0], [_IN], [lst]))
            case ir.InSet(value=v, items=items):
                s = _load(self.module.set_const(items))
                return self.wrap([v], lambda a: py.Compare(a[0], [_IN], [s]))
            case ir.Not(operand=o):
                return self.wrap([o], lambda a: _not(a[0]))
            case ir.BoolOp():
                return self.boolop(node)
            case ir.Cmp(op=op, left=lf, right=rt):
                return self.wrap([lf, rt], lambda a: py.Compare(a[0], [_CMP[op]], [a[1]]))
            case ir.Arith(op=op, left=lf, right=rt) if (
                node.checked or op in ("d*", "d/") or (op == "/" and node.nullable)
            ):
                # Division by a value that may be 0, or arithmetic that may leave the int64
                # range: a runtime helper answers unknown instead of raising or growing.
                return _call(_CHECKED[op], self.gen(lf), self.gen(rt))
            case ir.Arith(op=op, left=lf, right=rt):
                return self.wrap([lf, rt], lambda a: py.BinOp(a[0], _ARITH[op], a[1]))
            case ir.StrCall():
                return self.strcall(node)
            case ir.Neg(operand=o):
                return self.wrap([o], lambda a: py.UnaryOp(_USUB, a[0]))
            case ir.Named(node=body):
                return self.memo.wrap(node, lambda: self.gen(self.plain(body)))
        raise AssertionError(f"cannot generate {type(node).__name__}")

    def plain(self, node: ir.Node) -> ir.Node:
        """``node`` without the named conditions around it that are not memoised: written
        once, a condition is just its body (and keeps the body's fast paths)."""
        while isinstance(node, ir.Named) and node not in self.memo.vars:
            node = node.node
        return node

    def wrap(self, operands: list[ir.Node], body: Callable[[list[py.expr]], py.expr]) -> py.expr:
        """``body(args)``, or unknown (None) if any nullable operand is unknown."""
        operands = [self.plain(o) for o in operands]
        if not any(o.nullable for o in operands):
            return body([self.gen(o) for o in operands])
        args: list[py.expr] = []
        checks: list[py.expr] = []
        for o in operands:
            if isinstance(o, ir.AggValue):
                # Already a local variable: test it directly, no temporary needed.
                var = self.names.aggs[o.agg_id]
                checks.append(_is_none(_load(var)))
                args.append(_load(var))
            elif o.nullable:
                t = self.tmp()
                checks.append(_is_none(py.NamedExpr(_store(t), self.gen(o))))
                args.append(_load(t))
            else:
                args.append(self.gen(o))
        return _if_exp(_or(checks), _const(None), body(args))

    def boolop(self, node: ir.BoolOp) -> py.expr:
        op: py.boolop = _AND if node.op == "and" else _OR
        if not node.nullable:
            return py.BoolOp(op, [self.gen(o) for o in node.operands])
        # Kleene: one false operand decides `and` (one true decides `or`) even next to an
        # unknown one; otherwise any unknown operand makes the whole unknown.
        is_and = node.op == "and"
        decisive, other = (False, True) if is_and else (True, False)
        branches: list[tuple[py.expr, py.expr]] = []
        unknowns: list[py.expr] = []
        for o in map(self.plain, node.operands):
            var = self.simple_unknown(o)
            if var is not None:
                # `hits > 5` where only `hits` can be unknown: test it in place.
                assert isinstance(o, ir.Cmp)
                test: py.expr = py.Compare(self.gen(o.left), [_CMP[o.op]], [self.gen(o.right)])
                test = _not(test) if is_and else test
                branches.append((_and([_is_not_none(_load(var)), test]), _const(decisive)))
                unknowns.append(_is_none(_load(var)))
            elif o.nullable:
                t = self.tmp()
                named = py.NamedExpr(_store(t), self.gen(o))
                test = py.Compare(named, [_IS], [_const(decisive)])
                branches.append((test, _const(decisive)))
                unknowns.append(_is_none(_load(t)))
            else:
                plain = self.gen(o)
                branches.append((_not(plain) if is_and else plain, _const(decisive)))
        out: py.expr = _if_exp(_or(unknowns), _const(None), _const(other))
        for test, value in reversed(branches):
            out = _if_exp(test, value, out)
        return out

    def simple_unknown(self, node: ir.Node) -> str | None:
        """The one aggregate variable that makes a comparison unknown, if that is all."""
        if not isinstance(node, ir.Cmp):
            return None
        sides = [s for s in (node.left, node.right) if s.nullable]
        if len(sides) == 1 and isinstance(sides[0], ir.AggValue):
            return self.names.aggs[sides[0].agg_id]
        return None

    def strcall(self, node: ir.StrCall) -> py.expr:
        a = node.args
        phone = _load("phone")
        if node.func == "phone_starts_with":
            assert isinstance(a[0], ir.Lit)  # the checker insists on a "+..." constant
            return _call(_attr(phone, "e164", "startswith"), _const(a[0].value))
        if node.func == "matches":
            assert isinstance(a[1], ir.Lit)
            regex = _load(self.names.patterns[str(a[1].value)])
            # RE_n is a dsl.patterns.Matcher: search() answers a bool, memoised per input.
            return self.memo.wrap(
                node, lambda: self.wrap([a[0]], lambda x: _call(_attr(regex, "search"), x[0]))
            )
        if node.func == "phone_prefix":
            digits = _attr(phone, "digits")
            return self.wrap(
                [a[0]],
                lambda x: py.Subscript(digits, py.Slice(None, x[0], None), _LOAD),
            )
        forms: dict[str, Callable[[list[py.expr]], py.expr]] = {
            "lower": lambda x: _call(_attr(x[0], "lower")),
            "upper": lambda x: _call(_attr(x[0], "upper")),
            "starts_with": lambda x: _call(_attr(x[0], "startswith"), x[1]),
            "ends_with": lambda x: _call(_attr(x[0], "endswith"), x[1]),
            "contains": lambda x: py.Compare(x[1], [_IN], [x[0]]),
        }
        return self.wrap(list(a), forms[node.func])


def _fact(path: str) -> py.expr:
    match path:
        case "tenant":
            return _attr(_load("facts"), "tenant")
        case "phone.masked":
            return _call("masked", _load("phone"))
        case "event.local_hour":
            return _load("local_hour")
        case "event.local_weekday":
            return _load("local_weekday")
        case "event.occurred_at":
            return _call("int", _attr(_load("event"), "occurred_at"))
        case "decision.action":
            # Only a where filter reads it, in plan(): "" before the decision is made.
            return _load("action")
    obj, _, name = path.partition(".")
    return _attr(_load(obj), name)


def generate(policy: ir.CheckedPolicy, checkpoints: frozenset[int] = frozenset()) -> Generated:
    """``checkpoints``: the indices of the rules before which evaluation checks its
    deadline (the cost model places them: :func:`dsl.cost.checkpoints`)."""
    module = _Module()
    namespace: dict[str, object] = {}
    specs: dict[str, str] = {}
    for i, agg in enumerate(policy.aggregates):
        specs[agg.spec.id] = f"AGG_{i}"
        namespace[f"AGG_{i}"] = agg.spec
    read_ids = list(dict.fromkeys(i for r in policy.rules for i in r.reads))
    list_names = [name for name, *_ in policy.lists]
    members = sorted(
        {
            node.list_name
            for rule in policy.rules
            for part in (rule.condition, *(p for p in rule.reason if not isinstance(p, str)))
            for node in ir.walk(part)
            if isinstance(node, ir.InList)
            and isinstance(node.value, ir.Fact)
            and node.value.path == "phone.e164"
        },
        key=list_names.index,
    )
    names = _Names(
        aggs={agg_id: f"a_{i}" for i, agg_id in enumerate(read_ids)},
        lists={n: f"l_{i}" for i, n in enumerate(list_names)},
        members={n: f"in_{list_names.index(n)}" for n in members},
        specs=specs,
        patterns={p: f"RE_{i}" for i, p in enumerate(policy.patterns)},
        decimals=frozenset(a.spec.id for a in policy.aggregates if is_decimal(a.spec)),
    )
    module.body.append(_assign("TIMEZONE", _const(policy.timezone)))
    plan = _gen_plan(policy, module, names)
    evaluate = _gen_evaluate(policy, module, names, read_ids, checkpoints)
    main = py.Module([*module.body, plan, evaluate], [])
    # Positions are filled in by dsl.sandbox.verify, which walks the whole tree anyway.
    return Generated(main, namespace)


def describe_spec(spec: AggregateSpec) -> str:
    """One line for people: ``codes_today = count per number over today``."""
    what = spec.kind.value + (f"({spec.field})" if spec.field else "")
    key = spec.key.value + (f" {spec.key_arg}" if spec.key_arg else "")
    w = spec.window
    window = "today" if w.calendar_day else format_duration(w.size_s)
    ago = f", {format_duration(w.offset_s)} ago" if w.offset_s else ""
    return f"{spec.id} = {what} per {key} over {window}{ago}"


def _prologue(policy: ir.CheckedPolicy, names: _Names, *, local_time: bool) -> list[py.stmt]:
    out: list[py.stmt] = [
        _assign("phone", _attr(_load("facts"), "phone")),
        _assign("event", _attr(_load("facts"), "event")),
    ]
    if policy.uses_ip:
        out.append(_assign("ip", _attr(_load("facts"), "ip")))
    if local_time:
        out.append(
            py.Assign(
                [py.Tuple([_store("local_hour"), _store("local_weekday")], _STORE)],
                _call("local_time", _attr(_load("event"), "occurred_at"), _load("TIMEZONE")),
                lineno=0,
            )
        )
    for name, var in names.lists.items():
        get = _attr(_load("lists"), "get")
        out.append(_assign(var, _call(get, _const(name), _load("EMPTY_LIST"))))
    return out


def _gen_plan(policy: ir.CheckedPolicy, module: _Module, names: _Names) -> py.FunctionDef:
    local = {"event.local_hour", "event.local_weekday"}
    # What the plan computes of each event: filters, and the values numeric aggregates add.
    roots = [x for a in policy.aggregates for x in (a.where, a.value) if x is not None]
    uses_local = any(
        isinstance(n, ir.Fact) and n.path in local for root in roots for n in ir.walk(root)
    )
    body = _prologue(policy, names, local_time=uses_local)
    memo = _Memo(roots)
    body.extend(memo.init())
    # Each network size `per ip/N` counts by, worked out once: n_24 = "1.2.3.0/24".
    for bits in sorted(
        {int(arg) for a in policy.aggregates for k, arg in a.spec.keys if k is KeyKind.IP and arg}
    ):
        network = _call("ip_network", _attr(_load("event"), "ip"), _const(bits))
        body.append(_assign(f"n_{bits}", network))
    gen = _Expr(module, names, "p_", memo)
    refs: list[py.expr] = []
    # An aggregate and the windows ago() and sustained() read of it are fed by the same
    # events (docs/state.md §2): key, member and feeding are worked out once per declaration.
    bound: dict[str, tuple[py.expr, py.expr, py.expr]] = {}
    uses = Counter(agg.base_id for agg in policy.aggregates)
    for agg in policy.aggregates:
        spec = agg.spec
        found = bound.get(agg.base_id)
        if found is None:
            key: py.expr
            member: py.expr
            member_ok: py.expr | None
            key, key_ok = _plan_key(spec, names)
            if agg.value is not None:
                # The value as text, "" when unknown or out of bounds (does not feed).
                member = _once(_call("amount", gen.gen(agg.value)), gen, body)
                member_ok = _ne_empty(member)
            else:
                member, member_ok = _plan_member(spec)
            conds = [c for c in (key_ok, member_ok) if c is not None]
            if spec.after_decision:
                # Before the decision is made nothing feeds it (docs/state.md §11).
                conds.append(_ne_empty(_load("action")))
            if agg.where is not None:
                # An unknown filter (a number attribute that is absent) does not feed.
                where = gen.gen(agg.where)
                if agg.where.nullable:
                    where = py.Compare(where, [_IS], [_const(True)])
                conds.append(where)
            feeds: py.expr = _and(conds) if conds else _const(True)
            if uses[agg.base_id] > 1:
                key, member, feeds = (_once(v, gen, body) for v in (key, member, feeds))
            found = bound[agg.base_id] = (key, member, feeds)
        key, member, feeds = found
        refs.append(_call("AggregateRef", _load(names.specs[spec.id]), key, member, feeds))
    body.append(py.Return(_tuple(refs)))
    return _function("plan", ("facts", "lists", "action"), body)


def _once(value: py.expr, gen: _Expr, body: list[py.stmt]) -> py.expr:
    """``value`` as a local computed once: a constant or a name as it is."""
    if isinstance(value, py.Constant | py.Name):
        return value
    var = gen.tmp()
    body.append(_assign(var, value))
    return _load(var)


def _ne_empty(x: py.expr) -> py.expr:
    return py.Compare(x, [_NOTEQ], [_const("")])


def _plan_key(spec: AggregateSpec, names: _Names) -> tuple[py.expr, py.expr | None]:
    """The key value of a ref and the test that the event has one (all parts, if several)."""
    parts = [_key_part(kind, arg, names) for kind, arg in spec.keys]
    tests = [ok for _, ok in parts if ok is not None]
    test = _and(tests) if tests else None
    if len(parts) == 1:
        return parts[0][0], test
    return _call("join_key", *(value for value, _ in parts)), test


def _key_part(kind: KeyKind, arg: str, names: _Names) -> tuple[py.expr, py.expr | None]:
    phone, event = _load("phone"), _load("event")
    match kind:
        case KeyKind.NUMBER:
            return _attr(phone, "e164"), _ne_empty(_attr(phone, "e164"))
        case KeyKind.LIST:
            lst = _load(names.lists[arg])
            # The event's number, or its address for a list of networks.
            return _const(arg), _call("listed", lst, _attr(phone, "e164"), _attr(event, "ip"))
        case KeyKind.SEGMENT:
            return _attr(phone, "segment_prefix"), _ne_empty(_attr(phone, "segment_prefix"))
        case KeyKind.PREFIX:
            n = _const(int(arg))
            digits = _attr(phone, "digits")
            prefix = py.Subscript(digits, py.Slice(None, n, None), _LOAD)
            return prefix, py.Compare(_call("len", digits), [_GTE], [n])
        case KeyKind.DEVICE:
            return _attr(event, "device_id"), _ne_empty(_attr(event, "device_id"))
        case KeyKind.IP if arg:
            network = _load(f"n_{int(arg)}")
            return network, _ne_empty(network)
        case KeyKind.IP:
            return _attr(event, "ip"), _ne_empty(_attr(event, "ip"))
        case KeyKind.APP:
            return _attr(event, "app_id"), _ne_empty(_attr(event, "app_id"))
        case KeyKind.ATTRIBUTE:
            value = _call(_attr(event, "attributes", "get"), _const(arg), _const(""))
            return value, _ne_empty(value)
    return _const(""), None


def _plan_member(spec: AggregateSpec) -> tuple[py.expr, py.expr | None]:
    if spec.kind is AggKind.RUN:
        national = _attr(_load("phone"), "national_number")
        return national, _ne_empty(national)
    if spec.kind in (AggKind.COUNT, AggKind.FIRST_SEEN):
        return _const(""), None
    f = spec.field
    expr: py.expr
    if f == "phone":
        expr = _attr(_load("phone"), "e164")
    elif f.startswith(("phone.", "ip.")):
        obj, _, name = f.partition(".")
        expr = _attr(_load(obj), name)
    elif f.startswith("attr:"):
        expr = _call(_attr(_load("event"), "attributes", "get"), _const(f[5:]), _const(""))
    else:
        expr = _attr(_load("event"), f)
    return expr, _ne_empty(expr)


def _gen_evaluate(
    policy: ir.CheckedPolicy,
    module: _Module,
    names: _Names,
    read_ids: list[str],
    checkpoints: frozenset[int],
) -> py.FunctionDef:
    body = _prologue(policy, names, local_time=policy.uses_local_time)
    memo = _Memo([root for rule in policy.rules for root in _roots(rule)])
    body.extend(memo.init())
    e164 = _attr(_load("phone"), "e164")
    for n, var in names.members.items():
        # `phone in LIST` tends to appear in several rules: look each list up once.
        body.append(_assign(var, py.Compare(e164, [_IN], [_load(names.lists[n])])))
    if read_ids:
        body.append(_assign("get", _attr(_load("values"), "get")))
        for i in read_ids:
            body.append(_assign(names.aggs[i], _call("get", _const(i))))
        # A failed state answers no value at all; a numeric aggregate may answer unknown
        # (an empty window's min) while the state is fine.
        numeric = {a.spec.id for a in policy.aggregates if a.spec.kind in NUMERIC_KINDS}
        unknown = _or(
            [
                py.Compare(_const(i), [py.NotIn()], [_load("values")])
                if i in numeric
                else _is_none(_load(names.aggs[i]))
                for i in read_ids
            ]
        )
        body.append(_assign("unknown", unknown))
    else:
        body.append(_assign("unknown", _const(False)))
    body.append(_assign("matched", py.List([], _LOAD)))
    body.append(_assign("override", _const(False)))
    body.append(_assign("failed", py.List([], _LOAD)))
    for index, rule in enumerate(policy.rules):
        if index in checkpoints:
            # Between rules, outside every rule's try: past the deadline, the evaluation
            # stops here (runtime.EvaluationDeadline) instead of deciding late.
            body.append(py.Expr(_call("past", _load("deadline"))))
        body.extend(_gen_rule(rule, module, names, memo))
    decision = _call(
        "decide", _load("matched"), _load("unknown"), _load("override"), _load("trace")
    )
    decision.keywords.append(py.keyword("failed", _load("failed")))
    combining = policy.combining
    if combining.default_action != "allow":
        default = _load(_ACTION[combining.default_action])
        decision.keywords.append(py.keyword("default", default))
    for word in ("review_score", "block_score"):
        if value := getattr(combining, word):
            decision.keywords.append(py.keyword(word, _const(value)))
    body.append(py.Return(decision))
    params = ("facts", "values", "lists", "trace", "why", "deadline")
    return _function("evaluate", params, body)


def _roots(rule: ir.CheckedRule) -> list[ir.Node]:
    """The expressions the code of ``rule`` computes on every call: its condition and its
    reason's values (an explanation reuses what they computed)."""
    return [rule.condition, *(p for p in rule.reason if not isinstance(p, str))]


def _named(name: str, node: ir.Node) -> ir.Node:
    return node if isinstance(node, ir.Lit) else ir.Named(name, node, node.type, node.nullable)


def _gen_rule(
    rule: ir.CheckedRule, module: _Module, names: _Names, memo: _Memo = _NO_MEMO
) -> list[py.stmt]:
    gen = _Expr(module, names, memo=memo)

    def match(action: str, reason: py.expr, *, scored: bool = True) -> py.stmt:
        args = [
            _const(rule.name),
            _load(_ACTION[action]),
            reason,
            _const(rule.shadow),
            _const(rule.risk),
            _str_tuple(rule.tags),
        ]
        score = rule.score if scored else 0
        if rule.priority or score:
            args += [_const(rule.priority), _const(score)]
        return py.Expr(_call(_attr(_load("matched"), "append"), _call("Match", *args)))

    def traced(value: py.expr, matched: py.expr, detail: py.expr, error: bool) -> py.stmt:
        line = _call("RuleTrace", _const(rule.name), value, matched, detail, _const(error))
        append = py.Expr(_call(_attr(_load("trace"), "append"), line))
        return py.If(_is_not_none(_load("trace")), [append], [])

    fired: list[py.stmt] = [match(rule.action, _reason(rule.reason, gen))]
    if rule.override and not rule.shadow:
        fired.append(_assign("override", _const(True)))
    orelse: list[py.stmt] = []
    on_error = rule.on_error != "skip"
    if rule.condition.nullable:
        # An unknown condition (an aggregate missing, a division by 0) is an unknown input
        # of the decision, and the rule's on_error decides what it does.
        unknown_branch: list[py.stmt] = [_assign("unknown", _const(True))]
        if on_error:
            fire = rule.on_error == "fire"
            on_unknown = rule.action if fire else rule.on_error
            # Not the author's reason: it would state values nobody knows (docs/dsl.md).
            reason = _call(
                "unknown_reason",
                _load("why"),
                _load("values"),
                _str_tuple(rule.reads),
            )
            unknown_branch.append(match(on_unknown, reason, scored=fire))
        orelse = [py.If(_is_none(_load("c")), unknown_branch, [])]
    # Whether the rule matched follows from c: true, or unknown with an on_error.
    if rule.condition.nullable and on_error:
        matched = py.Compare(_load("c"), [_ISNOT], [_const(False)])
    else:
        matched = py.Compare(_load("c"), [_IS], [_const(True)])
    attempt: list[py.stmt] = [
        _assign("c", gen.gen(rule.condition)),
        py.If(_load("c"), fired, orelse),
        traced(_load("c"), matched, _detail(rule, gen), False),
    ]
    # An exception in this rule (a bug, a value nobody foresaw) is this rule's on_error: the
    # decision is still made from the other rules, and the failure is reported by name.
    failure: list[py.stmt] = [
        py.Expr(_call(_attr(_load("failed"), "append"), _const(rule.name))),
    ]
    if on_error:
        fire = rule.on_error == "fire"
        on_fail = rule.action if fire else rule.on_error
        failure.append(match(on_fail, _const(f"{rule.name}: evaluation failed"), scored=fire))
    note = _const(f"evaluation failed: on_error {rule.on_error}")
    failure.append(traced(_const(None), _const(on_error), note, True))
    handler = py.ExceptHandler(_load("Exception"), None, failure)
    # A label for people reading the unparsed module; a bare constant compiles to nothing.
    kind = "shadow rule" if rule.shadow else "rule"
    label = py.Expr(_const(f"{kind} {rule.name} ({rule.path}:{rule.line})"))
    return [label, py.Try(attempt, [handler], [], [])]


def _reason(parts: tuple[str | ir.Node, ...], gen: _Expr) -> py.expr:
    # Constant parts (text and folded constants) merge into one literal.
    merged: list[str | ir.Node] = []
    for p in parts:
        text = p if isinstance(p, str) else _const_text(p)
        if text is not None and merged and isinstance(merged[-1], str):
            merged[-1] += text
        else:
            merged.append(text if text is not None else p)
    pieces: list[py.expr] = []
    for p in merged:
        if isinstance(p, str):
            if p:
                pieces.append(_const(p))
            continue
        code = gen.gen(p)
        if p.type is Type.STR and not p.nullable:
            pieces.append(code)
        elif p.type is Type.DUR:
            pieces.append(_call("fmt_duration", code))
        elif p.type is Type.DEC:
            pieces.append(_call("fmt_decimal", code))
        else:
            pieces.append(_call("fmt", code))
    if not pieces:
        return _const("")
    out = pieces[0]
    for piece in pieces[1:]:
        out = py.BinOp(out, _ADD, piece)
    return out


def _const_text(node: ir.Node) -> str | None:
    if not isinstance(node, ir.Lit):
        return None
    if node.type is Type.DUR:
        assert isinstance(node.value, int)
        return format_duration(node.value)
    if node.type is Type.DEC:
        assert isinstance(node.value, int)
        return fmt_decimal(node.value)
    return fmt(node.value)


def _detail(rule: ir.CheckedRule, gen: _Expr) -> py.expr:
    """``'hits=12, heavy=true'`` for the explanation: the aggregates and named conditions
    the rule read, and why an unknown condition decided. Built by a runtime helper from
    constants, so explaining adds a few nodes per rule, not a copy of the rule."""
    args: list[py.expr] = [
        _load("values"),
        _str_tuple(rule.reads),
        _load("c"),
        _const(rule.on_error if rule.condition.nullable else ""),
    ]
    if rule.conditions:
        pairs = [_tuple([_const(n), gen.gen(_named(n, node))]) for n, node in rule.conditions]
        args.append(_tuple(pairs))
    decimals = [i for i in rule.reads if i in gen.names.decimals]
    call = _call("detail", *args)
    if decimals:  # shown as decimals (12.5), not millionths
        call.keywords.append(py.keyword("decimals", _str_tuple(tuple(decimals))))
    return call
