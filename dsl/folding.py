"""Constant folding and simplification of IR, with Kleene logic kept intact.

``fold_and`` also finds contradictions between bounds on the same expression
(``x > 5 and x < 3``): such a conjunction can never be true, whatever ``x`` is, so it
folds to ``false`` and the checker reports the rule as one that can never fire.
"""

from __future__ import annotations

from collections.abc import Sequence

from dsl import ir
from dsl.ir import Type

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_NUMERIC = (Type.INT, Type.DEC, Type.DUR)
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def fold_not(x: ir.Node) -> ir.Node:
    if isinstance(x, ir.Lit):
        return ir.Lit(not x.value, Type.BOOL)
    if isinstance(x, ir.Not):
        return x.operand
    if isinstance(x, ir.Cmp):
        # not (a >= b) is a < b, in three-valued logic too: unknown stays unknown.
        return ir.Cmp(_NEGATED[x.op], x.left, x.right, nullable=x.nullable)
    return ir.Not(x, nullable=x.nullable)


def _flatten(op: str, ops: Sequence[ir.Node]) -> list[ir.Node]:
    out: list[ir.Node] = []
    for o in ops:
        if isinstance(o, ir.BoolOp) and o.op == op:
            out.extend(o.operands)
        else:
            out.append(o)
    return out


def fold_and(ops: Sequence[ir.Node]) -> ir.Node:
    flat = _flatten("and", ops)
    if any(isinstance(o, ir.Lit) and o.value is False for o in flat):
        return ir.Lit(False, Type.BOOL)
    kept = [o for o in flat if not (isinstance(o, ir.Lit) and o.value is True)]
    if not kept:
        return ir.Lit(True, Type.BOOL)
    if _contradicts(kept, nullable_too=False):
        return ir.Lit(False, Type.BOOL)
    if len(kept) == 1:
        return kept[0]
    return ir.BoolOp("and", tuple(kept), nullable=any(o.nullable for o in kept))


def fold_or(ops: Sequence[ir.Node]) -> ir.Node:
    flat = _flatten("or", ops)
    if any(isinstance(o, ir.Lit) and o.value is True for o in flat):
        return ir.Lit(True, Type.BOOL)
    kept = [o for o in flat if not (isinstance(o, ir.Lit) and o.value is False)]
    if not kept:
        return ir.Lit(False, Type.BOOL)
    if len(kept) == 1:
        return kept[0]
    return ir.BoolOp("or", tuple(kept), nullable=any(o.nullable for o in kept))


def compare_values(op: str, a: object, b: object) -> bool:
    match op:
        case "==":
            return a == b
        case "!=":
            return a != b
    assert isinstance(a, int)
    assert isinstance(b, int)
    match op:
        case "<":
            return a < b
        case "<=":
            return a <= b
        case ">":
            return a > b
    return a >= b


def fold_cmp(op: str, left: ir.Node, right: ir.Node) -> ir.Node:
    if isinstance(left, ir.Lit) and isinstance(right, ir.Lit):
        return ir.Lit(compare_values(op, left.value, right.value), Type.BOOL)
    return ir.Cmp(op, left, right, nullable=left.nullable or right.nullable)


INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
# The largest magnitude each int fact can have; anything unlisted is a full int64.
_FACT_BOUNDS = {
    "phone.country_code": 999,
    "event.occurred_at": 253402300799,  # 9999-12-31, the request validator's limit
    "event.local_hour": 23,
    "event.local_weekday": 7,
}


class FoldError(ValueError):
    """A constant expression whose value leaves the int64 range."""


def in_range(value: int) -> bool:
    return INT_MIN <= value <= INT_MAX


def magnitude(node: ir.Node) -> int:
    """An upper bound on ``abs(value)`` of an int expression, from its parts alone."""
    match node:
        case ir.Lit(value=v) if isinstance(v, int) and not isinstance(v, bool):
            return abs(v)
        case ir.Fact(path=p):
            return _FACT_BOUNDS.get(p, INT_MAX)
        case ir.Arith(checked=False, op=op, left=a, right=b):
            ma, mb = magnitude(a), magnitude(b)
            match op:
                case "*":
                    bound = ma * mb
                case "d*":
                    bound = ma * mb // ir.DECIMAL_SCALE + 1
                case "/":
                    bound = ma
                case "d/":
                    bound = ma * ir.DECIMAL_SCALE
                case _:
                    bound = ma + mb
            return min(bound, 2**64)  # anything past int64 is "too big"; keep it small
        case ir.Neg(operand=x):
            return magnitude(x)
    return INT_MAX


def fold_arith(op: str, left: ir.Node, right: ir.Node, result: Type) -> ir.Node:
    """``left op right``, folded when both are constants (raises :class:`FoldError` when
    that leaves int64); otherwise a node marked ``checked`` if its value might."""
    if isinstance(left, ir.Lit) and isinstance(right, ir.Lit):
        a, b = left.value, right.value
        assert isinstance(a, int)
        assert isinstance(b, int)
        value: int | None = None
        if op == "+":
            value = a + b
        elif op == "-":
            value = a - b
        elif op == "*":
            # Both sides are int64, so the product has at most 127 bits: cheap to compute.
            value = a * b
        elif op == "d*":
            value = a * b // ir.DECIMAL_SCALE
        elif b != 0:
            value = a * ir.DECIMAL_SCALE // b if op == "d/" else a // b
        if value is not None:
            if not in_range(value):
                raise FoldError("the value of this expression is outside the 64-bit integer range")
            return ir.Lit(value, result)
    safe_divisor = isinstance(right, ir.Lit) and right.value != 0
    node = ir.Arith(op, left, right, result)
    checked = magnitude(node) > INT_MAX
    divides = op in ("/", "d/")
    nullable = left.nullable or right.nullable or (divides and not safe_divisor) or checked
    return ir.Arith(op, left, right, result, nullable, checked)


def never_true(node: ir.Node) -> bool:
    """True when ``node`` can be false or unknown but never true.

    Unlike folding, this looks through unknowns: ``hits > 5 and hits < 3`` is unknown when
    ``hits`` is, so it cannot fold to false, yet it can never be true.
    """
    if isinstance(node, ir.Lit):
        return node.value is False
    if isinstance(node, ir.Named):
        return never_true(node.node)
    if isinstance(node, ir.BoolOp) and node.op == "and":
        return any(never_true(o) for o in node.operands) or _contradicts(
            node.operands, nullable_too=True
        )
    if isinstance(node, ir.BoolOp):
        return all(never_true(o) for o in node.operands)
    return False


def _contradicts(ops: Sequence[ir.Node], *, nullable_too: bool) -> bool:
    """True when integer bounds on one expression leave no value: ``x > 5 and x < 3``.

    A subject that can be unknown only counts with ``nullable_too``: unknown and unknown is
    unknown, so such a conjunction must not fold to false.
    """
    lo: dict[ir.Node, int] = {}
    hi: dict[ir.Node, int] = {}
    for o in _conjuncts(ops):
        if not isinstance(o, ir.Cmp) or o.left.type not in _NUMERIC:
            continue
        if o.nullable and not nullable_too:
            continue
        subject: ir.Node
        if isinstance(o.right, ir.Lit) and not isinstance(o.left, ir.Lit):
            subject, op, c = o.left, o.op, o.right.value
        elif isinstance(o.left, ir.Lit):
            subject, op, c = o.right, _FLIP[o.op], o.left.value
        else:
            continue
        assert isinstance(c, int)
        if op in (">", ">=", "=="):
            bound = c + 1 if op == ">" else c
            lo[subject] = max(lo.get(subject, bound), bound)
        if op in ("<", "<=", "=="):
            bound = c - 1 if op == "<" else c
            hi[subject] = min(hi.get(subject, bound), bound)
        if subject in lo and subject in hi and lo[subject] > hi[subject]:
            return True
    return False


def _conjuncts(ops: Sequence[ir.Node]) -> list[ir.Node]:
    """``ops`` with named conditions opened: ``busy and hits < 3`` where ``busy`` is
    ``hits > 5`` holds the bounds of both."""
    out: list[ir.Node] = []
    stack = list(reversed(ops))
    while stack:
        o = stack.pop()
        if isinstance(o, ir.Named):
            body = o.node
            stack.extend(
                reversed(body.operands)
                if isinstance(body, ir.BoolOp) and body.op == "and"
                else (body,)
            )
        else:
            out.append(o)
    return out
