"""The checked, resolved form of a policy that the code generator reads.

Every name is resolved (constants inlined, aggregates turned into value reads, lists into
membership tests), every node carries its type, and ``nullable`` says whether it can be
unknown at run time (it reads an aggregate). Nodes hold no spans, so structurally equal
expressions compare equal — the checker uses that to spot contradictions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum, StrEnum

from dsl.aggregates import AggregateSpec
from dsl.ast import Span
from dsl.lists import LabelUse, ListUse


class Type(StrEnum):
    INT = "int"
    # Fixed-point: the value is an int counting millionths (DECIMAL_SCALE), so decimals are
    # exact for + and -, and * and / round toward minus infinity at the sixth place.
    DEC = "decimal"
    STR = "string"
    BOOL = "bool"
    DUR = "duration"
    SET_STR = "set of strings"
    SET_INT = "set of ints"
    ERROR = "<error>"  # an expression that already has a diagnostic; matches anything


@dataclass(frozen=True, slots=True)
class Lit:
    value: int | str | bool | frozenset[int] | frozenset[str]
    type: Type
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Fact:
    """A field of the request: ``phone.carrier``, ``event.scene``, ``tenant``, ..."""

    path: str
    type: Type
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class EventAttr:
    key: str
    type: Type = Type.STR
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class EventNumber:
    """``event.number("amount")``: the attribute read as a decimal (millionths), unknown
    when it is absent or not a number (:func:`dsl.runtime.number` says which texts are)."""

    key: str
    type: Type = Type.DEC
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class AggValue:
    agg_id: str
    type: Type = Type.INT
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class InList:
    value: Node
    list_name: str
    type: Type = Type.BOOL
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class ListLabel:
    list_name: str
    label: str
    type: Type = Type.STR
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class InSet:
    value: Node
    items: frozenset[int] | frozenset[str]
    type: Type = Type.BOOL
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class StrCall:
    """A string helper: lower, upper, starts_with, ends_with, contains, matches (its second
    argument a literal pattern), phone_starts_with, phone_prefix."""

    func: str
    args: tuple[Node, ...]
    type: Type
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    type: Type = Type.BOOL
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Node, ...]
    type: Type = Type.BOOL
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str
    left: Node
    right: Node
    type: Type = Type.BOOL
    nullable: bool = False


DECIMAL_SCALE = 1_000_000
DECIMAL_PLACES = 6


@dataclass(frozen=True, slots=True)
class Arith:
    # + - * and / (floor division of ints, or of a decimal by an int), and for two
    # decimals "d*" ((a * b) // SCALE) and "d/" ((a * SCALE) // b). x / 0 is unknown.
    op: str
    left: Node
    right: Node
    type: Type
    nullable: bool = False
    # The result may leave the int64 range: computed by a helper that answers unknown.
    checked: bool = False


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node
    type: Type
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Named:
    """A named condition where it is used: ``node`` is its checked body (already
    substituted, for a window of ``sustained()``). Kept as a node rather than inlined so
    the generated code computes each one once per evaluation however often rules use it;
    folding, contradiction checks and canonical texts look through it."""

    name: str
    node: Node
    type: Type = Type.BOOL
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Error:
    """Stands in for an expression that already has a diagnostic."""

    type: Type = Type.ERROR
    nullable: bool = False


Node = (
    Lit
    | Fact
    | EventAttr
    | EventNumber
    | AggValue
    | InList
    | ListLabel
    | InSet
    | StrCall
    | Not
    | BoolOp
    | Cmp
    | Arith
    | Neg
    | Named
    | Error
)


@dataclass(frozen=True, slots=True)
class CheckedAggregate:
    spec: AggregateSpec
    where: Node | None  # a non-nullable bool over facts; None = every event feeds it
    base_id: str  # the declared aggregate an offset variant belongs to (itself otherwise)
    value: Node | None = None  # sum/avg/min/max: the number each event adds


@dataclass(frozen=True, slots=True)
class CheckedRule:
    name: str
    shadow: bool
    action: str  # allow | review | block, or "" for a rule that only adds a score
    override: bool
    risk: int
    tags: tuple[str, ...]
    reason: tuple[str | Node, ...]
    on_error: str  # skip | fire | allow | review | block
    condition: Node
    reads: tuple[str, ...]  # aggregate ids the condition reads, for explanations
    path: str
    line: int
    priority: int = 0
    score: int = 0
    # Named conditions the rule uses, with their checked form: shown by name in explanations.
    conditions: tuple[tuple[str, Node], ...] = ()
    column: int = 1


@dataclass(frozen=True, slots=True)
class Combining:
    """How matched rules become one decision (settings; see docs/dsl.md)."""

    default_action: str = "allow"
    review_score: int = 0  # 0: scores never make a review
    block_score: int = 0


@dataclass(frozen=True, slots=True)
class Sites:
    """Where the parts the cost model weighs were written (nodes hold no spans): each
    ``matches()`` call (its node) and each aggregate window by id, at its first use, with
    each pattern's RE2 program size."""

    matches: tuple[tuple[StrCall, Span], ...] = ()
    aggregates: tuple[tuple[str, Span], ...] = ()
    programs: tuple[tuple[str, int], ...] = ()  # pattern -> RE2 instructions


@dataclass(frozen=True, slots=True)
class CheckedPolicy:
    tenant: str
    timezone: str
    aggregates: tuple[CheckedAggregate, ...]
    # name, path, file, line, column, kept in state (`from state`)
    lists: tuple[tuple[str, str, str, int, int, bool], ...]
    rules: tuple[CheckedRule, ...]
    uses_local_time: bool
    combining: Combining = Combining()
    patterns: tuple[str, ...] = ()  # regular expressions, compiled once when loaded
    label_uses: tuple[LabelUse, ...] = ()
    sites: Sites = Sites()
    # ip.* facts are read: the server looks the address up in its IP databases.
    uses_ip: bool = False
    list_uses: tuple[ListUse, ...] = ()  # `phone in L` / `event.ip in L`, judged once loaded


def children(node: Node) -> tuple[Node, ...]:
    match node:
        case InList(value=v) | InSet(value=v) | Not(operand=v) | Neg(operand=v):
            return (v,)
        case BoolOp(operands=ops):
            return ops
        case Cmp(left=a, right=b) | Arith(left=a, right=b):
            return (a, b)
        case StrCall(args=args):
            return args
        case Named(node=v):
            return (v,)
    return ()


def walk(node: Node) -> list[Node]:
    """Every node under ``node`` (inclusive), without recursion."""
    out: list[Node] = []
    stack = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(children(n))
    return out


def canonical(node: Node) -> str:
    """A deterministic text of ``node`` that equal meanings share: the storage identity of a
    ``where`` filter (docs/state.md §3). Every declared field is written (a field added to a
    node counts by default), sets in sorted order, and the operands of ``and``/``or`` in
    sorted order (both are commutative in three-valued logic). Nodes carry no spans, so
    where the text stood in the file does not matter, nor whether a named condition or its
    body was written."""
    while isinstance(node, Named):
        node = node.node
    if isinstance(node, Cmp) and node.op in _FLIPPED:
        # `a > b` is `b < a`: one spelling of each comparison.
        node = Cmp(_FLIPPED[node.op], node.right, node.left, node.type, node.nullable)
    parts: list[str] = []
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(node, Cmp) and node.op in _SYMMETRIC and f.name in ("left", "right"):
            # `x == "a"` and `"a" == x`: the operands of == and != in sorted order.
            pair = sorted((canonical(node.left), canonical(node.right)))
            text = pair[0] if f.name == "left" else pair[1]
        elif isinstance(node, BoolOp) and f.name == "operands":
            text = "(" + ",".join(sorted(canonical(o) for o in v)) + ")"
        elif isinstance(v, tuple):
            text = "(" + ",".join(canonical(o) if _is_node(o) else repr(o) for o in v) + ")"
        elif _is_node(v):
            text = canonical(v)
        elif isinstance(v, frozenset):
            text = "{" + ",".join(sorted(repr(x) for x in v)) + "}"
        else:
            text = repr(v.value) if isinstance(v, Enum) else repr(v)
        parts.append(f"{f.name}={text}")
    return f"{type(node).__name__}[{';'.join(parts)}]"


_FLIPPED = {">": "<", ">=": "<="}
_SYMMETRIC = frozenset({"==", "!="})


def _is_node(v: object) -> bool:
    return dataclasses.is_dataclass(v) and not isinstance(v, type)
