"""The lint stage: conditions that are well typed and still wrong.

Runs after name resolution and type checking (:mod:`dsl.checker`), on what the checker
made of every expression: the typed IR of each syntax node (``typed``: ``id(node)`` ->
``(node, ir)``), so each finding has the ``file:line:col`` of what the author wrote. It
finds:

* **values a fact never has** — ``event.local_hour > 24``, ``event.local_weekday == 0``,
  ``codes_today < 0`` (counts, distinct counts, runs and ages are never negative),
  ``phone.segment_kind == "MVNO"`` (kinds and number types are fixed, lower-case sets),
  ``phone.region == "cn"``, ``phone.national_number.starts_with("+86170")``;
* **contradictions** between tests of one value — ``event.scene == "register" and
  event.scene == "login"`` — and **tautologies** — ``phone.valid or not phone.valid``,
  ``codes_today >= 0``;
* **list lookups of what a list never holds** — ``event.ip in privacy_numbers`` (lists
  hold phone numbers);
* **whole-number values compared with decimals** — ``codes_today > 0.5``;
* **rules with the same condition and opposite actions**, and a ``settings`` time zone
  that differs from the tenant's ``tenant.toml``.

A rule whose condition can never be true is an error (as the checker's own
``x > 5 and x < 3`` is): it is dead code that looks alive. Everything else is a warning.

The reasoning is a small abstract domain per tested value (sets of integer intervals,
finite or co-finite sets of strings, sets of booleans), meet over ``and`` and join over
``or``; it never claims more than it proves, so a value it knows nothing about is left
alone. Unknown values (an aggregate the state could not give) make a comparison unknown,
never true: "always true" here means "true whenever its inputs are known".
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsl import ast, ir
from dsl.aggregates import AggKind
from dsl.diagnostics import Diagnostic, Severity, Suggestion
from dsl.durations import format_duration
from dsl.folding import never_true
from dsl.ir import Type
from dsl.options import CompileOptions
from dsl.runtime import fmt_decimal
from dsl.suggest import closest

# The fixed vocabularies of phone facts. server/phone holds the same sets (the segment
# table's kinds, phonenumbers' number types); tests/dsl/test_lint.py keeps them equal.
SEGMENT_KINDS = frozenset({"mobile", "mvno", "data_only", "iot", "satellite", "emergency"})
NUMBER_TYPES = frozenset(
    {
        "fixed_line",
        "mobile",
        "fixed_line_or_mobile",
        "toll_free",
        "premium_rate",
        "shared_cost",
        "voip",
        "personal_number",
        "pager",
        "uan",
        "voicemail",
        "unknown",
    }
)
_INF = float("inf")
# Aggregate kinds whose values are never negative (a count, a run length, an age).
_NON_NEGATIVE = frozenset({AggKind.COUNT, AggKind.DISTINCT, AggKind.RUN, AggKind.FIRST_SEEN})
# What facts that never hold a phone number are, for "X in LIST" (lists hold numbers).
_NOT_NUMBERS = {
    "event.scene": "a scene",
    "event.app_id": "an app id",
    "phone.segment_kind": "a segment kind",
    "phone.number_type": "a number type",
    "phone.region": "a region code",
    "phone.carrier": "a carrier name",
    "phone.segment_prefix": "a segment prefix",
    "phone.masked": "a masked number",
    "phone.national_number": "the national number, without '+' and the country code",
    "tenant": "the tenant name",
}


# -- value sets ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ints:
    """A set of integers: sorted, disjoint, non-adjacent closed intervals (inf for none)."""

    parts: tuple[tuple[float, float], ...]

    @staticmethod
    def of(parts: Iterable[tuple[float, float]]) -> Ints:
        merged: list[tuple[float, float]] = []
        # (inf, inf) and (-inf, -inf) hold no integer: what complements leave at the ends.
        real = (p for p in parts if p[0] <= p[1] and p[0] != _INF and p[1] != -_INF)
        for lo, hi in sorted(real):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return Ints(tuple(merged))

    @staticmethod
    def compare(op: str, c: int) -> Ints:
        match op:
            case "<":
                return Ints.of([(-_INF, c - 1)])
            case "<=":
                return Ints.of([(-_INF, c)])
            case ">":
                return Ints.of([(c + 1, _INF)])
            case ">=":
                return Ints.of([(c, _INF)])
            case "==":
                return Ints.of([(c, c)])
        return Ints.of([(-_INF, c - 1), (c + 1, _INF)])

    def meet(self, other: Ints) -> Ints:
        # Both sorted and disjoint: one merge, not every pair (two sets of 1,000 values
        # were a million pairs).
        out = []
        i = j = 0
        mine, theirs = self.parts, other.parts
        while i < len(mine) and j < len(theirs):
            (a, b), (c, d) = mine[i], theirs[j]
            lo, hi = max(a, c), min(b, d)
            if lo <= hi:
                out.append((lo, hi))
            if b < d:
                i += 1
            else:
                j += 1
        return Ints(tuple(out))

    def join(self, other: Ints) -> Ints:
        return Ints.of(self.parts + other.parts)

    def complement(self) -> Ints:
        out, lo = [], -_INF
        for a, b in self.parts:
            out.append((lo, a - 1))
            lo = b + 1
        out.append((lo, _INF))
        return Ints.of(out)

    def covers(self, other: Ints) -> bool:
        return other.meet(self.complement()).empty

    @property
    def empty(self) -> bool:
        return not self.parts


@dataclass(frozen=True, slots=True)
class Strs:
    """A set of strings: ``items`` when ``inside``, else every string but ``items``."""

    inside: bool
    items: frozenset[str]

    def meet(self, other: Strs) -> Strs:
        if self.inside and other.inside:
            return Strs(True, self.items & other.items)
        if self.inside:
            return Strs(True, self.items - other.items)
        if other.inside:
            return Strs(True, other.items - self.items)
        return Strs(False, self.items | other.items)

    def join(self, other: Strs) -> Strs:
        if self.inside and other.inside:
            return Strs(True, self.items | other.items)
        if self.inside:
            return Strs(False, other.items - self.items)
        if other.inside:
            return Strs(False, self.items - other.items)
        return Strs(False, self.items & other.items)

    def complement(self) -> Strs:
        return Strs(not self.inside, self.items)


@dataclass(frozen=True, slots=True)
class Bools:
    values: frozenset[bool]

    def meet(self, other: Bools) -> Bools:
        return Bools(self.values & other.values)

    def join(self, other: Bools) -> Bools:
        return Bools(self.values | other.values)

    def complement(self) -> Bools:
        return Bools(frozenset({True, False}) - self.values)


Value = Ints | Strs | Bools
_BOTH = Bools(frozenset({True, False}))


# -- what values a fact can have -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StrDomain:
    """The strings a value can be: a finite set, or those ``possible`` allows."""

    describe: str  # "one of mobile, mvno, ..." / "digits only"
    finite: frozenset[str] | None = None
    possible: Callable[[str], bool] = lambda s: True
    chars: frozenset[str] | None = None  # characters it can hold, when limited
    first: str = ""  # a character every non-empty value starts with

    def allows(self, s: str) -> bool:
        return s in self.finite if self.finite is not None else self.possible(s)

    def can_contain(self, part: str) -> bool:
        if self.finite is not None:
            return any(part in v for v in self.finite)
        return self.chars is None or all(c in self.chars for c in part)

    def can_start_with(self, part: str) -> bool:
        if self.finite is not None:
            return any(v.startswith(part) for v in self.finite)
        if self.first and part and part[0] != self.first:
            return False
        return self.can_contain(part)

    def can_end_with(self, part: str) -> bool:
        if self.finite is not None:
            return any(v.endswith(part) for v in self.finite)
        if self.first and self.first in part[1:]:
            return False
        return self.can_contain(part)


_DIGITS = frozenset("0123456789")
_STR_FACTS: dict[str, StrDomain] = {
    "phone.segment_kind": StrDomain(
        'one of mobile, mvno, data_only, iot, satellite, emergency, or "" outside CN',
        finite=SEGMENT_KINDS | {""},
    ),
    "phone.number_type": StrDomain(
        "one of " + ", ".join(sorted(NUMBER_TYPES)), finite=NUMBER_TYPES
    ),
    "phone.region": StrDomain(
        'an upper-case region code such as "CN"', possible=lambda s: s == s.upper()
    ),
    "phone.e164": StrDomain(
        '"+" and digits, such as "+8617012345678"',
        possible=lambda s: s.startswith("+") and s[1:].isdigit(),
        chars=_DIGITS | {"+"},
        first="+",
    ),
    "phone.national_number": StrDomain(
        'digits only, without "+" and the country code ("17012345678")',
        possible=lambda s: s == "" or (s.isascii() and s.isdigit()),
        chars=_DIGITS,
    ),
    "phone.segment_prefix": StrDomain(
        'digits only ("1703"), or ""',
        possible=lambda s: s == "" or (s.isascii() and s.isdigit()),
        chars=_DIGITS,
    ),
}
_INT_FACTS: dict[str, tuple[Ints, str]] = {
    "event.local_hour": (Ints.of([(0, 23)]), "0..23"),
    "event.local_weekday": (Ints.of([(1, 7)]), "1..7 (Monday is 1, Sunday 7)"),
    "phone.country_code": (Ints.of([(0, 999)]), "0..999"),
    "event.occurred_at": (Ints.of([(0, _INF)]), "seconds since 1970, never negative"),
}
_KIND_WORDS = {
    AggKind.COUNT: "a count",
    AggKind.DISTINCT: "a count of distinct values",
    AggKind.RUN: "a run length",
    AggKind.FIRST_SEEN: "an age",
}


def _str_domain(node: ir.Node) -> StrDomain | None:
    match node:
        case ir.Fact(path=p):
            return _STR_FACTS.get(p)
        case ir.StrCall(func="lower"):
            return StrDomain("lower case", possible=lambda s: s == s.lower())
        case ir.StrCall(func="upper"):
            return StrDomain("upper case", possible=lambda s: s == s.upper())
        case ir.StrCall(func="phone_prefix", args=(ir.Lit(value=int() as n),)):
            return StrDomain(
                f"at most {n} digits, without '+'",
                possible=lambda s: len(s) <= n and s.isascii() and s.isdigit(),
                chars=_DIGITS,
            )
    return None


# -- reading IR ----------------------------------------------------------------------------

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _promoted(node: ir.Node) -> ir.Node | None:
    """The int inside an int the checker scaled to compare it with a decimal."""
    if (
        isinstance(node, ir.Arith)
        and node.op == "*"
        and node.type is Type.DEC
        and node.left.type is Type.INT
        and isinstance(node.right, ir.Lit)
        and node.right.value == ir.DECIMAL_SCALE
    ):
        return node.left
    return None


@dataclass(frozen=True, slots=True)
class Atom:
    """One test of one value: ``subject`` is the value tested (an IR node), ``value`` the
    set of its values for which the test is true."""

    subject: ir.Node
    value: Value


def _decimal_bounds(op: str, c: int) -> Ints:
    """``x * SCALE op c`` as a set of whole x."""
    s = ir.DECIMAL_SCALE
    floor, ceil = c // s, -(-c // s)
    match op:
        case "<":
            return Ints.of([(-_INF, ceil - 1)])
        case "<=":
            return Ints.of([(-_INF, floor)])
        case ">":
            return Ints.of([(floor + 1, _INF)])
        case ">=":
            return Ints.of([(ceil, _INF)])
    exact = c % s == 0
    if op == "==":
        return Ints.of([(c // s, c // s)] if exact else [])
    return Ints.of([(-_INF, c // s - 1), (c // s + 1, _INF)] if exact else [(-_INF, _INF)])


def atom(n: ir.Node) -> Atom | None:
    """``n`` as a test of one value, when it is one."""
    match n:
        case ir.Not(operand=inner):
            a = atom(inner)
            return None if a is None else Atom(a.subject, a.value.complement())
        case ir.Cmp(op=op, left=left, right=right):
            return _compare_atom(op, left, right, n)
        case ir.InSet(value=v, items=items):
            if v.type is Type.STR:
                return Atom(v, Strs(True, frozenset(str(i) for i in items)))
            whole = sorted(int(i) for i in items)
            if len(whole) > 1000:
                return None
            return Atom(v, Ints.of((i, i) for i in whole))
        case ir.BoolOp() | ir.Lit() | ir.Error():
            return None
    if n.type is Type.BOOL:
        return Atom(n, Bools(frozenset({True})))
    return None


def _compare_atom(op: str, left: ir.Node, right: ir.Node, whole: ir.Node) -> Atom | None:
    if isinstance(right, ir.Lit) and not isinstance(left, ir.Lit):
        subject, c = left, right.value
    elif isinstance(left, ir.Lit) and not isinstance(right, ir.Lit):
        subject, op, c = right, _FLIP[op], left.value
    elif not isinstance(left, ir.Lit):
        # Two values: `a > b` and `a <= b` test one thing, `a <= b`, either way round.
        if op in ("==", "!="):
            pair = tuple(sorted((left, right), key=ir.canonical))
            key = ir.Cmp("==", pair[0], pair[1])
            return Atom(key, Bools(frozenset({op == "=="})))
        a, b, holds = {
            "<=": (left, right, True),
            ">": (left, right, False),
            ">=": (right, left, True),
            "<": (right, left, False),
        }[op]
        return Atom(ir.Cmp("<=", a, b), Bools(frozenset({holds})))
    else:
        return None
    if subject.type is Type.STR and isinstance(c, str) and op in ("==", "!="):
        return Atom(subject, Strs(op == "==", frozenset({c})))
    if subject.type is Type.BOOL and isinstance(c, bool) and op in ("==", "!="):
        return Atom(subject, Bools(frozenset({c if op == "==" else not c})))
    if isinstance(c, int) and not isinstance(c, bool):
        inner = _promoted(subject)
        if inner is not None:
            return Atom(inner, _decimal_bounds(op, c))
        if subject.type in (Type.INT, Type.DUR, Type.DEC):
            return Atom(subject, Ints.compare(op, c))
    return None


# -- the facts' domains --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Why:
    """Why a condition is never (or always) true: the IR node where the reason lies, and
    the reason in words."""

    node: ir.Node
    text: str
    fix: Suggestion | None = None


@dataclass
class Domains:
    """What the values a policy reads can be."""

    kinds: Mapping[str, AggKind]  # aggregate id -> kind

    def ints(self, subject: ir.Node) -> tuple[Ints, str] | None:
        match subject:
            case ir.Fact(path=p) if p in _INT_FACTS:
                return _INT_FACTS[p]
            case ir.AggValue(agg_id=i) if self.kinds.get(i) in _NON_NEGATIVE:
                word = _KIND_WORDS[self.kinds[i]]
                return Ints.of([(0, _INF)]), f"{word}, never negative"
        return None

    def restrict(self, a: Atom) -> Value:
        """The test's true set, within what its subject can be."""
        v = a.value
        if isinstance(v, Ints):
            found = self.ints(a.subject)
            return v if found is None else v.meet(found[0])
        if isinstance(v, Strs):
            dom = _str_domain(a.subject)
            if dom is None:
                return v
            if dom.finite is not None:
                return Strs(True, (v.items if v.inside else dom.finite - v.items) & dom.finite)
            kept = frozenset(s for s in v.items if dom.allows(s))
            return Strs(v.inside, kept)
        return v

    def full(self, a: Atom, value: Value) -> bool:
        """Whether ``value`` holds every value ``a.subject`` can have."""
        if isinstance(value, Ints):
            found = self.ints(a.subject)
            return value.covers(found[0] if found is not None else Ints.of([(-_INF, _INF)]))
        if isinstance(value, Strs):
            dom = _str_domain(a.subject)
            if dom is not None and dom.finite is not None:
                return value.inside and dom.finite <= value.items
            return not value.inside and not value.items
        return value.values == _BOTH.values

    def empty(self, value: Value) -> bool:
        if isinstance(value, Ints):
            return value.empty
        if isinstance(value, Strs):
            return value.inside and not value.items
        return not value.values


def _join_all(values: Sequence[Value]) -> Value:
    """The union of values of one domain, in one pass."""
    first = values[0]
    if isinstance(first, Ints):
        return Ints.of(p for v in values if isinstance(v, Ints) for p in v.parts)
    if isinstance(first, Strs):
        strs = [v for v in values if isinstance(v, Strs)]
        inside = frozenset().union(*(v.items for v in strs if v.inside))
        outside = [v.items for v in strs if not v.inside]
        if not outside:
            return Strs(True, inside)
        return Strs(False, frozenset.intersection(*outside) - inside)
    return Bools(frozenset().union(*(v.values for v in values if isinstance(v, Bools))))


def _meet_all(values: Sequence[Value]) -> Value:
    """The intersection of values of one domain, in one pass."""
    return _join_all([v.complement() for v in values]).complement()


# -- never and always ----------------------------------------------------------------------


def _bare(n: ir.Node) -> ir.Node:
    """A named condition's body: the reasoning is about what it tests, not its name."""
    while isinstance(n, ir.Named):
        n = n.node
    return n


def _parts(ops: Sequence[ir.Node], op: str) -> list[ir.Node]:
    """The operands of an ``and`` (``or``) with named conditions opened, and the operands
    of a body that is the same operation taken in: `registering and x` holds the tests of
    `registering`'s body."""
    out: list[ir.Node] = []
    stack = list(reversed(ops))
    while stack:
        o = _bare(stack.pop())
        if isinstance(o, ir.BoolOp) and o.op == op:
            stack.extend(reversed(o.operands))
        else:
            out.append(o)
    return out


class Reasoner:
    """Whether a condition can never be true, or is always true when known, and why."""

    def __init__(self, domains: Domains) -> None:
        self.d = domains
        # By node identity: each node is judged once, however many parts ask. The nodes
        # belong to the checked policy, alive for as long as this reasoner is.
        self._never: dict[int, Why | None] = {}
        self._always: dict[int, Why | None] = {}
        self._atoms: dict[int, Atom | None] = {}

    def atom(self, n: ir.Node) -> Atom | None:
        n = _bare(n)
        key = id(n)
        if key not in self._atoms:
            self._atoms[key] = atom(n)
        return self._atoms[key]

    def never(self, n: ir.Node) -> Why | None:
        n = _bare(n)
        key = id(n)
        if key not in self._never:
            self._never[key] = self._judge_never(n)
        return self._never[key]

    def always(self, n: ir.Node) -> Why | None:
        n = _bare(n)
        key = id(n)
        if key not in self._always:
            self._always[key] = self._judge_always(n)
        return self._always[key]

    def _judge_never(self, n: ir.Node) -> Why | None:
        match n:
            case ir.Lit(value=False):
                return Why(n, "it is false")
            case ir.Cmp(op="!=" | "<" | ">", left=x, right=y) if x == y:
                return Why(n, f"'{show(n)}' compares a value with itself: never true")
            case ir.BoolOp(op="and", operands=ops):
                for o in ops:
                    w = self.never(o)
                    if w is not None:
                        return w
                return self._conflict(n, ops)
            case ir.BoolOp(op="or", operands=ops):
                whys = [self.never(o) for o in ops]
                if all(w is not None for w in whys):
                    texts = "; ".join(w.text for w in whys[:3] if w is not None)
                    return Why(n, f"none of its alternatives can be true ({texts})")
                return None
        special = self._never_leaf(n)
        if special is not None:
            return special
        a = self.atom(n)
        if a is None:
            return None
        if self.d.empty(self.d.restrict(a)):
            return Why(n, self._domain_text(a, n, never=True), self._fix(a))
        return None

    def _judge_always(self, n: ir.Node) -> Why | None:
        match n:
            case ir.Lit(value=True):
                return Why(n, "it is true")
            case ir.Cmp(op="==" | "<=" | ">=", left=x, right=y) if x == y:
                return Why(n, f"'{show(n)}' compares a value with itself: always true")
            case ir.BoolOp(op="or", operands=ops):
                for o in ops:
                    w = self.always(o)
                    if w is not None:
                        return w
                return self._cover(n, ops)
            case ir.BoolOp(op="and", operands=ops):
                whys = [self.always(o) for o in ops]
                if all(w is not None for w in whys):
                    texts = "; ".join(w.text for w in whys[:3] if w is not None)
                    return Why(n, f"every part of it is always true ({texts})")
                return None
        if isinstance(n, ir.Not):
            inner = self._never_leaf(n.operand)
            if inner is not None:
                return Why(n, f"{inner.text}, so '{show(n)}' is always true")
        a = self.atom(n)
        if a is None:
            return None
        if self.d.full(a, self.d.restrict(a)):
            return Why(n, self._domain_text(a, n, never=False))
        return None

    def _never_leaf(self, n: ir.Node) -> Why | None:
        """Tests that fail for what their value is, not for the value they compare with."""
        match n:
            case ir.InList(value=v, list_name=name):
                return self._list_lookup(n, v, name)
            case ir.StrCall(func=("starts_with" | "ends_with" | "contains") as f, args=(s, p)):
                if not isinstance(p, ir.Lit) or not isinstance(p.value, str):
                    return None
                dom = _str_domain(s)
                if dom is None:
                    return None
                can = {
                    "starts_with": dom.can_start_with,
                    "ends_with": dom.can_end_with,
                    "contains": dom.can_contain,
                }[f]
                if can(p.value):
                    return None
                verb = {"starts_with": "starts with", "ends_with": "ends with"}.get(f, "contains")
                text = f"{show(s)} is {dom.describe}: it never {verb} {_quote(p.value)}"
                if _is_fact(s, "phone.national_number") and f == "starts_with":
                    text += _national_advice(p.value)
                if _is_fact(s, "phone.e164") and f == "starts_with":
                    text += f'; write phone.e164.starts_with("+{p.value}")'
                return Why(n, text)
        return None

    def _list_lookup(self, n: ir.Node, v: ir.Node, name: str) -> Why | None:
        # An address (event.ip, a literal one) may be on a list of networks: whether this
        # list holds numbers or networks is known once its file is loaded, and the loader
        # judges those lookups (dsl.lists.list_use_problems).
        holds = 'phone numbers (E.164, "+86...") or IP networks'
        if isinstance(v, ir.Fact) and v.path in _NOT_NUMBERS:
            what = _NOT_NUMBERS[v.path]
            hint = (
                f"; write 'phone in {name}'"
                if v.path in ("phone.national_number", "phone.masked")
                else ""
            )
            return Why(
                n,
                f"list '{name}' holds {holds}; {v.path} is {what}, never one of them{hint}",
            )
        if (
            isinstance(v, ir.Lit)
            and isinstance(v.value, str)
            and not _e164_like(v.value)
            and not _address_like(v.value)
        ):
            return Why(
                n,
                f"list '{name}' holds {holds}; {_quote(v.value)} is not one",
            )
        return None

    def _conflict(self, n: ir.Node, ops: Sequence[ir.Node]) -> Why | None:
        def empty(items: Sequence[tuple[Atom, ir.Node]]) -> bool:
            first = self.d.restrict(items[0][0])
            return self.d.empty(_meet_all([first, *(a.value for a, _ in items[1:])]))

        seen = self._first_prefix(_parts(ops, "and"), empty)
        if seen is None:
            return None
        parts = " and ".join(f"'{show(x)}'" for x in seen[:4])
        both = "both" if len(seen) == 2 else "all"
        return Why(n, f"{parts} cannot {both} be true at once")

    def _cover(self, n: ir.Node, ops: Sequence[ir.Node]) -> Why | None:
        def full(items: Sequence[tuple[Atom, ir.Node]]) -> bool:
            first = items[0][0]
            joined = _join_all([a.value for a, _ in items])
            return self.d.full(first, self.d.restrict(Atom(first.subject, joined)))

        seen = self._first_prefix(_parts(ops, "or"), full)
        if seen is None:
            return None
        parts = " or ".join(f"'{show(x)}'" for x in seen[:4])
        return Why(n, f"one of {parts} is always true")

    def _first_prefix(
        self,
        operands: Sequence[ir.Node],
        holds: Callable[[Sequence[tuple[Atom, ir.Node]]], bool],
    ) -> list[ir.Node] | None:
        """The shortest run of two or more tests of one value, taken in order, for which
        ``holds`` (of their combined value), the one that ends first among the operands;
        None when no value's tests do.

        ``holds`` only turns true as tests are added (a meet only shrinks, a join only
        grows), so each value is judged once on all its tests and, when that holds, its
        shortest run is found by bisection: linear in the tests but for a log factor,
        where judging after every test was quadratic (a rule of 6,000 ``x == N or ...``
        took 27 s)."""
        groups: dict[ir.Node, list[tuple[int, Atom, ir.Node]]] = {}
        for index, o in enumerate(operands):
            a = self.atom(o)
            if a is None:
                continue
            group = groups.setdefault(a.subject, [])
            # Tests of one value in another domain (a decimal scaled to an int): left out.
            if group and type(group[0][1].value) is not type(a.value):
                continue
            group.append((index, a, o))
        best: tuple[int, list[ir.Node]] | None = None
        for group in groups.values():
            items = [(a, o) for _, a, o in group]
            if len(items) < 2 or not holds(items):
                continue
            lo, hi = 2, len(items)
            while lo < hi:
                mid = (lo + hi) // 2
                if holds(items[:mid]):
                    hi = mid
                else:
                    lo = mid + 1
            end = group[lo - 1][0]
            if best is None or end < best[0]:
                best = (end, [o for _, o in items[:lo]])
        return None if best is None else best[1]

    def _domain_text(self, a: Atom, n: ir.Node, *, never: bool) -> str:
        verdict = "never true" if never else "always true"
        test = show(n)
        subject = show(a.subject)
        if isinstance(a.value, Ints):
            found = self.d.ints(a.subject)
            if found is not None:
                return f"{subject} is {found[1]}, so '{test}' is {verdict}"
            return f"'{test}' is {verdict}"
        if isinstance(a.value, Strs):
            dom = _str_domain(a.subject)
            items = sorted(a.value.items)
            bad = [s for s in items if dom is not None and not dom.allows(s)]
            if dom is not None and bad:
                word = "is never" if len(bad) == 1 else "are never"
                shown = ", ".join(_quote(s) for s in bad[:5])
                return f"{subject} is {dom.describe}: {shown} {word} one, so '{test}' is {verdict}"
            if dom is not None:
                return f"{subject} is {dom.describe}, so '{test}' is {verdict}"
        return f"'{test}' is {verdict}"

    def _fix(self, a: Atom) -> Suggestion | None:
        """For a string a fact never has: the one it most likely meant."""
        if not isinstance(a.value, Strs) or len(a.value.items) != 1:
            return None
        (text,) = a.value.items
        dom = _str_domain(a.subject)
        if dom is None or dom.allows(text):
            return None
        for guess in (text.lower(), text.upper()):
            if guess != text and dom.allows(guess) and guess.isidentifier():
                return Suggestion(text, guess)
        if dom.finite is not None:
            found = closest(text, sorted(s for s in dom.finite if s))
            if found is not None and found != text and text.isidentifier():
                return Suggestion(text, found)
        return None


def _national_advice(prefix: str) -> str:
    if not prefix.startswith("+"):
        return ""
    digits = prefix[1:]
    rest = digits[2:] if digits.startswith("86") else ""
    tail = f' or phone.national_number.starts_with("{rest}")' if rest else ""
    return f'; write phone.starts_with("{prefix}"){tail}'


def _e164_like(s: str) -> bool:
    return s.startswith("+") and s[1:].isascii() and s[1:].isdigit()


def _address_like(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _is_fact(n: ir.Node, path: str) -> bool:
    return isinstance(n, ir.Fact) and n.path == path


def _quote(s: str) -> str:
    return json.dumps(s[:60], ensure_ascii=False)


# -- IR as the author wrote it -------------------------------------------------------------


def show(n: ir.Node, depth: int = 0) -> str:
    """An IR node as policy text (approximately as written), for messages."""
    if depth > 12:
        return "..."
    d = depth + 1
    match n:
        case ir.Lit(value=v, type=t):
            if t is Type.STR:
                return _quote(str(v))
            if t is Type.BOOL:
                return "true" if v else "false"
            if t is Type.DUR and isinstance(v, int):
                return format_duration(v)
            if t is Type.DEC and isinstance(v, int):
                return fmt_decimal(v)
            if isinstance(v, frozenset):
                items = sorted(v, key=str)
                body = ", ".join(_quote(i) if isinstance(i, str) else str(i) for i in items[:6])
                return "{" + body + (", ..." if len(items) > 6 else "") + "}"
            return str(v)
        case ir.Fact(path=p):
            return p
        case ir.EventAttr(key=k):
            return f"event.attributes[{_quote(k)}]"
        case ir.AggValue(agg_id=i):
            return i
        case ir.InList(value=v, list_name=name):
            who = "phone" if _is_fact(v, "phone.e164") else show(v, d)
            return f"{who} in {name}"
        case ir.ListLabel(list_name=name, label=label):
            return f"{name}.label({_quote(label)})"
        case ir.InSet(value=v, items=items):
            return f"{show(v, d)} in {show(ir.Lit(items, Type.SET_STR), d)}"
        case ir.Not(operand=ir.InSet() as inner):
            return show(inner, d).replace(" in {", " not in {", 1)
        case ir.Not(operand=inner):
            return f"not {show(inner, d)}"
        case ir.BoolOp(op=op, operands=ops):
            return f" {op} ".join(
                f"({show(o, d)})" if isinstance(o, ir.BoolOp) else show(o, d) for o in ops
            )
        case ir.Cmp(op=op, left=a, right=b):
            return f"{show(a, d)} {op} {show(b, d)}"
        case ir.Arith(op=op, left=a, right=b):
            scaled = _promoted(n)
            if scaled is not None:
                return show(scaled, d)
            return f"{show(a, d)} {op.lstrip('d')} {show(b, d)}"
        case ir.Neg(operand=x):
            return f"-{show(x, d)}"
        case ir.StrCall(func=f, args=args):
            if f == "phone_starts_with":
                return f"phone.starts_with({show(args[0], d)})"
            if f == "phone_prefix":
                return f"phone.prefix({show(args[0], d)})"
            rest = ", ".join(show(a, d) for a in args[1:])
            return f"{show(args[0], d)}.{f}({rest})"
    return "..."


# -- the stage -----------------------------------------------------------------------------


Typed = Mapping[int, tuple[ast.Expr, ir.Node]]


@dataclass(frozen=True, slots=True, kw_only=True)
class LintInput:
    modules: Sequence[tuple[ast.Module, bool]]  # (module, from the shared library)
    typed: Typed
    policy: ir.CheckedPolicy
    conditions: frozenset[str]  # names of named conditions
    options: CompileOptions


@dataclass
class _Report:
    diags: list[Diagnostic] = field(default_factory=list)
    seen: set[tuple[str, int, int, str]] = field(default_factory=set)

    def add(
        self, span: ast.Span, severity: Severity, message: str, fix: Suggestion | None = None
    ) -> None:
        key = (span.path, span.line, span.column, message)
        if key in self.seen:
            return
        self.seen.add(key)
        self.diags.append(Diagnostic.at(span, severity, message, fix))


def lint(data: LintInput) -> list[Diagnostic]:
    """Every lint finding of a checked policy (see the module docstring)."""
    kinds = {a.spec.id: a.spec.kind for a in data.policy.aggregates}
    reasoner = Reasoner(Domains(kinds))
    walker = _Walker(data.typed, reasoner, data.conditions)
    out = _Report()
    rules = {r.name: r for r in data.policy.rules}
    tenant = [m for m, library in data.modules if not library]
    for module, _ in data.modules:
        for item in module.items:
            if isinstance(item, ast.Condition):
                walker.condition(item, out)
            elif isinstance(item, ast.Aggregate) and item.where is not None:
                walker.where(item, out)
    for module in tenant:
        for item in module.items:
            if isinstance(item, ast.Rule):
                checked = rules.get(item.name)
                when = next((c for c in item.clauses if isinstance(c, ast.When)), None)
                if checked is not None and when is not None:
                    walker.rule(item, checked, when.expr, out)
    _twin_rules(data.policy.rules, tenant, reasoner, out)
    _timezone(tenant, data.options, out)
    return out.diags


class _Walker:
    def __init__(self, typed: Typed, reasoner: Reasoner, conditions: frozenset[str]) -> None:
        self.typed = typed
        self.r = reasoner
        self.conditions = conditions

    def ir_of(self, e: ast.Expr) -> ir.Node | None:
        found = self.typed.get(id(e))
        return None if found is None or found[0] is not e else found[1]

    def rule(self, r: ast.Rule, checked: ir.CheckedRule, when: ast.Expr, out: _Report) -> None:
        cond = checked.condition
        if isinstance(cond, ir.Error):
            return
        dead = self.r.never(cond)
        if isinstance(cond, ir.Lit) or (dead is not None and never_true(cond)):
            # The checker has judged the whole: its reason is not repeated as a part's.
            self.parts(when, out, top=None if dead is None else dead.node)
            return
        if dead is not None:
            span = self.spans(when).get(id(dead.node), when.span)
            out.add(span, Severity.ERROR, f"rule '{r.name}' can never fire: {dead.text}", dead.fix)
            self.parts(when, out, top=dead.node)
            return
        every = self.r.always(cond)
        if every is not None:
            span = self.spans(when).get(id(every.node), when.span)
            known = " whenever its aggregates are known" if cond.nullable else ""
            out.add(
                span,
                Severity.WARNING,
                f"rule '{r.name}' fires on every request{known}: {every.text}",
            )
            self.parts(when, out, top=every.node)
            return
        self.parts(when, out, top=None)

    def condition(self, c: ast.Condition, out: _Report) -> None:
        node = self.ir_of(c.value)
        if node is None or isinstance(node, ir.Error):
            return
        self.whole(node, c.value, out, f"condition '{c.name}'")

    def where(self, a: ast.Aggregate, out: _Report) -> None:
        assert a.where is not None
        node = self.ir_of(a.where)
        if node is None or isinstance(node, ir.Error | ir.Lit):
            return  # a literal filter is the checker's to judge
        spans = self.spans(a.where)
        dead = self.r.never(node)
        if dead is not None:
            span = spans.get(id(dead.node), a.where.span)
            out.add(
                span,
                Severity.ERROR,
                f"aggregate '{a.name}' can never be fed: {dead.text}",
                dead.fix,
            )
            self.parts(a.where, out, top=dead.node)
            return
        self.whole(node, a.where, out, f"the filter of aggregate '{a.name}'")

    def whole(self, node: ir.Node, e: ast.Expr, out: _Report, what: str) -> None:
        spans = self.spans(e)
        top: ir.Node | None = None
        for why, verdict in ((self.r.never(node), "never"), (self.r.always(node), "always")):
            if why is not None and not isinstance(node, ir.Lit):
                span = spans.get(id(why.node), e.span)
                out.add(span, Severity.WARNING, f"{what} is {verdict} true: {why.text}", why.fix)
                top = why.node
                break
        self.parts(e, out, top=top)

    def spans(self, root: ast.Expr) -> dict[int, ast.Span]:
        """id of an IR node -> the span of the innermost syntax it came from."""
        out: dict[int, ast.Span] = {}
        for e in _post_order(root, self.conditions):
            n = self.ir_of(e)
            if n is None:
                continue
            out.setdefault(id(n), e.span)
            for o in _made_here(n):
                out.setdefault(id(o), e.span)
        return out

    def parts(self, root: ast.Expr, out: _Report, top: ir.Node | None) -> None:
        """Findings about parts of a condition, each where it was written; ``top`` is
        already reported with the whole (and so is what its negation negates)."""
        done = {id(top)} if top is not None else set()
        if isinstance(top, ir.Not):
            done.add(id(top.operand))
        for e in _post_order(root, self.conditions):
            n = self.ir_of(e)
            if n is None or n.type is not Type.BOOL or isinstance(n, ir.Lit | ir.Error):
                continue
            if isinstance(e, ast.Compare):
                self._decimal(e, n, out)
            elif isinstance(e, ast.In):
                self._set_items(e, n, out)
            made = {id(o) for o in _made_here(n)} - {id(c) for c in self._child_irs(e, n)}
            for why, verdict in ((self.r.never(n), "never"), (self.r.always(n), "always")):
                if why is None or id(why.node) in done or isinstance(why.node, ir.Lit):
                    continue
                # `x between 0 and 5` bounds x at its lowest value on purpose: only the
                # whole of it is judged always true, never one of its two bounds.
                parts = made if verdict == "never" or not isinstance(e, ast.Between) else set()
                if why.node is n or id(why.node) in parts:
                    out.add(e.span, Severity.WARNING, why.text, why.fix)
                    break

    def _set_items(self, e: ast.Expr, n: ir.Node, out: _Report) -> None:
        """``phone.number_type in {"mobile", "Mobile"}``: an item the value never is."""
        base = n.operand if isinstance(n, ir.Not) else n
        if not isinstance(e, ast.In) or not isinstance(base, ir.InSet):
            return
        dom = _str_domain(base.value)
        if dom is None or base.value.type is not Type.STR:
            return
        bad = sorted(str(i) for i in base.items if not dom.allows(str(i)))
        if not bad or len(bad) == len(base.items):
            return  # none, or all: then the whole test is never true, reported as such
        fix = self.r._fix(Atom(base.value, Strs(True, frozenset(bad[:1]))))
        shown = ", ".join(_quote(b) for b in bad[:5])
        word = "is never" if len(bad) == 1 else "are never"
        out.add(
            e.span,
            Severity.WARNING,
            f"{show(base.value)} is {dom.describe}: {shown} {word} one",
            fix if len(bad) == 1 else None,
        )

    def _child_irs(self, e: ast.Expr, n: ir.Node) -> list[ir.Node]:
        out = []
        for c in _children(e):
            cn = self.ir_of(c)
            if cn is None:
                continue
            out.append(cn)
            if isinstance(cn, ir.BoolOp) and isinstance(n, ir.BoolOp) and cn.op == n.op:
                out.extend(cn.operands)
        return out

    def _decimal(self, e: ast.Expr, n: ir.Node | None, out: _Report) -> None:
        """``codes_today > 0.5``: a whole number compared with a fraction."""
        if not isinstance(e, ast.Compare) or not isinstance(n, ir.Cmp):
            return
        for side, lit, op in ((n.left, n.right, n.op), (n.right, n.left, _FLIP[n.op])):
            inner = _promoted(side)
            if inner is None or not isinstance(lit, ir.Lit) or not isinstance(lit.value, int):
                continue
            c = lit.value
            if c % ir.DECIMAL_SCALE == 0 or op in ("==", "!="):
                continue
            bounds = _decimal_bounds(op, c)
            lo, hi = bounds.parts[0]
            better = f">= {int(lo)}" if hi == _INF else f"<= {int(hi)}"
            out.add(
                e.span,
                Severity.WARNING,
                f"{show(inner)} is a whole number: '{show(inner)} {op} {fmt_decimal(c)}' is"
                f" '{show(inner)} {better}'; compare it with a whole number",
            )


_CHILDREN: dict[type, Callable[[Any], tuple[ast.Expr, ...]]] = {
    ast.Attr: lambda e: (e.obj,),
    ast.Method: lambda e: (e.obj, *e.args),
    ast.Index: lambda e: (e.obj, e.key),
    ast.Call: lambda e: e.args,
    ast.SetLit: lambda e: e.items,
    ast.Not: lambda e: (e.operand,),
    ast.Neg: lambda e: (e.operand,),
    ast.BoolOp: lambda e: e.operands,
    ast.Compare: lambda e: (e.left, e.right),
    ast.In: lambda e: (e.left, e.right),
    ast.BinOp: lambda e: (e.left, e.right),
    ast.Between: lambda e: (e.value, e.low, e.high),
}


def _children(e: ast.Expr) -> tuple[ast.Expr, ...]:
    get = _CHILDREN.get(type(e))
    return () if get is None else get(e)


def _post_order(root: ast.Expr, conditions: frozenset[str]) -> Iterator[ast.Expr]:
    """Every expression under ``root``, children first, without recursion."""
    stack: list[tuple[ast.Expr, bool]] = [(root, False)]
    while stack:
        e, expanded = stack.pop()
        if expanded:
            yield e
            continue
        stack.append((e, True))
        for c in reversed(_children(e)):
            stack.append((c, False))


def _made_here(n: ir.Node) -> tuple[ir.Node, ...]:
    """IR a syntax node makes besides its own node: `a between 1 and 5` is two tests."""
    if isinstance(n, ir.BoolOp):
        return n.operands
    if isinstance(n, ir.Not):
        return (n.operand,)
    return ()


def _twin_rules(
    rules: Sequence[ir.CheckedRule],
    tenant: Sequence[ast.Module],
    reasoner: Reasoner,
    out: _Report,
) -> None:
    """Two live rules with one condition and different actions: one of them never decides."""
    spans = {
        item.name: item.name_span for m in tenant for item in m.items if isinstance(item, ast.Rule)
    }
    # Grouped by a cheap key first (the operands of a top-level and/or in any order):
    # the canonical text that decides is built only for rules that share one.
    groups: dict[object, list[ir.CheckedRule]] = {}
    for r in rules:
        if r.shadow or not r.action or isinstance(r.condition, ir.Error | ir.Lit):
            continue
        c = r.condition
        key = (c.op, frozenset(c.operands)) if isinstance(c, ir.BoolOp) else c
        groups.setdefault(key, []).append(r)
    for group in groups.values():
        if len(group) < 2 or len({r.action for r in group}) < 2:
            continue
        first: dict[str, ir.CheckedRule] = {}
        for r in group:
            if never_true(r.condition) or reasoner.never(r.condition) is not None:
                continue  # dead: reported as such
            other = first.setdefault(ir.canonical(r.condition), r)
            if other is r or other.action == r.action:
                continue
            winner = _winner(other, r)
            span = spans.get(r.name)
            if span is None:
                continue
            out.add(
                span,
                Severity.WARNING,
                f"rule '{r.name}' ({r.action}) has the same condition as rule '{other.name}'"
                f" ({other.action}, {other.path}:{other.line}): they always fire together, and"
                f" '{winner.name}' decides ({winner.action})",
            )


_SEVERITY = {"allow": 1, "review": 2, "block": 3}


def _winner(a: ir.CheckedRule, b: ir.CheckedRule) -> ir.CheckedRule:
    """Which of two rules that fire together decides (docs/dsl.md, "Combining")."""
    for r in (a, b):
        if r.override and r.action == "allow":
            return r
    if a.priority != b.priority:
        return a if a.priority > b.priority else b
    return a if _SEVERITY[a.action] >= _SEVERITY[b.action] else b


def _timezone(tenant: Sequence[ast.Module], options: CompileOptions, out: _Report) -> None:
    configured = options.tenant_timezone
    if not configured:
        return
    for m in tenant:
        for item in m.items:
            if not isinstance(item, ast.Settings):
                continue
            for entry in item.entries:
                value = entry.value
                if entry.name != "timezone" or not isinstance(value, ast.StrLit):
                    continue
                if value.is_plain and value.value != configured:
                    out.add(
                        value.span,
                        Severity.WARNING,
                        f"the policy's time zone {_quote(value.value)} differs from"
                        f" tenant.toml's {_quote(configured)}: the policy's is used (local"
                        " hours, weekdays, 'today' windows); set it in one place",
                    )
