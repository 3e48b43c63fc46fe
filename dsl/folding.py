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
_NUMERIC = (Type.INT, Type.DUR)
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


def fold_arith(op: str, left: ir.Node, right: ir.Node, result: Type) -> ir.Node:
    if isinstance(left, ir.Lit) and isinstance(right, ir.Lit):
        a, b = left.value, right.value
        assert isinstance(a, int)
        assert isinstance(b, int)
        if op == "+":
            return ir.Lit(a + b, result)
        if op == "-":
            return ir.Lit(a - b, result)
        if op == "*":
            return ir.Lit(a * b, result)
        if b != 0:
            return ir.Lit(a // b, result)
    safe_divisor = isinstance(right, ir.Lit) and right.value != 0
    nullable = left.nullable or right.nullable or (op == "/" and not safe_divisor)
    return ir.Arith(op, left, right, result, nullable)


def never_true(node: ir.Node) -> bool:
    """True when ``node`` can be false or unknown but never true.

    Unlike folding, this looks through unknowns: ``hits > 5 and hits < 3`` is unknown when
    ``hits`` is, so it cannot fold to false, yet it can never be true.
    """
    if isinstance(node, ir.Lit):
        return node.value is False
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
    for o in ops:
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
