"""The cost model: what evaluating a checked policy can cost per request, at worst.

A stage of its own beside the checker, the way CEL's cost estimator sits beside its type
checker: it reads the checked policy (nodes, aggregate windows, patterns, lists) and adds
up, in **units**, the most work one request can make the server do for it, with every
input at the longest value request validation admits. A policy over its tenant's budget
is refused when it is checked (:func:`budget_diagnostic`), naming its most expensive
parts; docs/security.md ("The cost model") states the model and how it was calibrated.

One unit is about the work of one expression node (≈ 2 ns on the reference machine).
The weights below are upper bounds measured on that machine, rounded up; the test in
``tests/security/test_evaluation_cost.py`` evaluates policies made of each kind of part,
at the budget and with worst-case inputs, and holds their real cost to the estimate.

What is counted, per request:

* every expression node of every rule's condition and reason (conditions are evaluated
  in full: worst case), each named condition and each ``matches()`` call once however
  often rules repeat it (the generated code computes each once per evaluation);
* a ``matches()`` call: its input's longest length (at most :data:`patterns.MAX_INPUT`)
  times a constant and its pattern's RE2 program size (RE2 is linear in both); string
  helpers by the length of what they read;
* each list lookup and label;
* every rule, and every rule that can fire as if it fired (its match, its share of the
  decision, its entry in the reply and the metrics), and its explanation line;
* each aggregate window read once per distinct (identity, offset) (the state reads each
  once) at the most its kind can cost: a count two binary searches, a distinct value
  every member of an exact set or a merge of 61 HyperLogLog sketches, a run a walk of
  1,000 neighbours each way; and each identity the event is recorded into; for a policy
  counting past decisions, the second call that records the decision (the plan again,
  and those windows read again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from dsl import ir
from dsl.aggregates import AggKind, identity
from dsl.ast import Span
from dsl.diagnostics import Diagnostic, Severity
from dsl.patterns import MAX_INPUT

# -- weights, in units (one unit ≈ one expression node, ≈ 2 ns on the reference machine) --

NODE = 1
RULE = 50  # a rule's try block, its test of the condition, the trace check
MATCH = 1_500  # a rule that fires: Match, combining, the reply's entry, the rule metric
EXPLAIN = 300  # an explanation line per rule (RuleTrace and its detail text)
MEMO = 5  # a use of a named condition or a matches() call already computed
LIST_LOOKUP = 500  # a number looked up in a list (exact, prefixes, ranges)
LABEL = 500  # a list label (a lookup and a dict get)
PATTERN_CALL = 1_500  # a matches() call: the binding, the memo
# RE2 on an input it has not seen: its DFA builds states as it reads (or gives up and runs
# its NFA), so a search costs per input character a constant and a share of the program:
# measured up to ~1.4 µs a character for 17 instructions and ~3.7 µs for 1,600.
PATTERN_CHAR = 600
PATTERN_STEP = 3  # per input character and RE2 instruction
CHARS_PER_UNIT = 4  # linear string work in C (lower(), hashing, copying)
REASON = 100  # building a reason from its parts
NUMBER = 300  # event.number(): a regular expression over the attribute and an int
# An aggregate window in the plan and the state's planner: its ref, key, bucket range.
WINDOW = 750
READ = {
    AggKind.COUNT: 250,  # two binary searches
    AggKind.FIRST_SEEN: 250,
    # The larger of: every member of an exact set (1,000) tested against the window, and
    # a merge of its 61 HyperLogLog sketches and an estimate (numpy).
    AggKind.DISTINCT: 25_000,
    # 1,000 neighbours each way, each a dict lookup and a test of its buckets.
    AggKind.RUN: 250_000,
    # Every bucket of the window (at most 61, each a dict lookup and an add or compare);
    # an average reads its sum and its number of values (two reads).
    AggKind.SUM: 2_500,
    AggKind.AVG: 5_000,
    AggKind.MIN: 2_500,
    AggKind.MAX: 2_500,
}
WRITE = {
    AggKind.COUNT: 500,
    AggKind.FIRST_SEEN: 500,
    # A new member of a full exact set scans the set for members to drop.
    AggKind.DISTINCT: 40_000,
    AggKind.RUN: 2_000,  # amortised, with trims
    # A bucket's fields updated; a trim of buckets past the cutoff, amortised.
    AggKind.SUM: 800,
    AggKind.AVG: 800,
    AggKind.MIN: 600,
    AggKind.MAX: 600,
}

# The longest value of each string the policy can read. Request fields are those request
# validation admits (server/rpc/validation.py; a test holds the two together); phone facts
# come from parsing a number of at most 64 characters.
FACT_CHARS = {
    "tenant": 64,
    "phone.e164": 16,
    "phone.region": 2,
    "phone.number_type": 32,
    "phone.carrier": 256,
    "phone.segment_kind": 16,
    "phone.segment_prefix": 16,
    "phone.national_number": 17,
    "phone.masked": 16,
    "event.scene": 64,
    "event.app_id": 128,
    "event.ip": 64,
    "event.device_id": 256,
}
ATTRIBUTE_CHARS = 512
# A list label is a CSV field: at most the csv module's field limit.
LABEL_CHARS = 131_072
# The evaluation checks its deadline between rules after about this much work.
CHECK_EVERY = 50_000


@dataclass(frozen=True, slots=True)
class Part:
    """One expensive thing the policy does per request, where it was written."""

    units: int
    span: Span
    what: str


@dataclass(frozen=True, slots=True)
class PolicyCost:
    """The worst-case cost of one evaluation, in units."""

    total: int
    parts: tuple[Part, ...]  # most expensive first
    rules: tuple[int, ...]  # each rule's own share, in rule order (for deadline checks)
    aggregates: int  # the plan and the state's reads and writes


def estimate(policy: ir.CheckedPolicy) -> PolicyCost:
    return _Estimator(policy).run()


def checkpoints(rule_costs: Sequence[int], every: int = CHECK_EVERY) -> frozenset[int]:
    """The rules before which the evaluation checks its deadline: after roughly ``every``
    units of work since the last check (a cheap policy gets none)."""
    out: set[int] = set()
    spent = 0
    for i, units in enumerate(rule_costs):
        if spent >= every:
            out.add(i)
            spent = 0
        spent += units
    return frozenset(out)


def budget_diagnostic(cost: PolicyCost, budget: int, first: str) -> Diagnostic | None:
    """The error for a policy over ``budget`` units (0: no budget), at its most expensive
    part, naming the largest parts; None within budget."""
    if budget <= 0 or cost.total <= budget:
        return None
    top = cost.parts[:3]
    listed = "; ".join(
        f"{p.what} at {p.span.path}:{p.span.line}:{p.span.column}: {p.units:,}" for p in top
    )
    message = (
        f"evaluating this policy may cost up to {cost.total:,} units a request, over the"
        f" tenant's budget of {budget:,} (see docs/security.md, the cost model); most"
        f" expensive: {listed}"
    )
    if not top:
        return Diagnostic(first, 1, 1, Severity.ERROR, message)
    return Diagnostic.at(top[0].span, Severity.ERROR, message)


def chars(node: ir.Node) -> int:
    """The longest string ``node`` can be."""
    match node:
        case ir.Lit(value=str() as v):
            return len(v)
        case ir.Fact(path=p):
            return FACT_CHARS.get(p, ATTRIBUTE_CHARS)
        case ir.EventAttr():
            return ATTRIBUTE_CHARS
        case ir.ListLabel():
            return LABEL_CHARS
        case ir.StrCall(func="lower" | "upper", args=(a,)):
            return 3 * chars(a)  # Unicode case mapping grows a character to at most three
        case ir.StrCall(func="phone_prefix"):
            return FACT_CHARS["phone.e164"]
    return ATTRIBUTE_CHARS


def _linear(n: int) -> int:
    return n // CHARS_PER_UNIT


class _Estimator:
    def __init__(self, policy: ir.CheckedPolicy) -> None:
        self.policy = policy
        self.programs = dict(policy.sites.programs)
        self.match_sites = dict(policy.sites.matches)
        self.agg_sites = dict(policy.sites.aggregates)
        self.done: set[ir.Node] = set()  # memoised nodes already paid for
        self.members: set[str] = set()  # lists `phone in LIST` looked up (once each)
        # Attributed costs: (kind, key) -> units, and where and what to call them.
        self.attributed: Counter[tuple[str, object]] = Counter()
        self.labels: dict[tuple[str, object], tuple[Span, str]] = {}

    def run(self) -> PolicyCost:
        policy = self.policy
        aggregates = self.aggregate_costs()
        rules: list[int] = []
        for rule in policy.rules:
            span = Span(rule.path, rule.line, rule.column, rule.line, rule.column)
            own, searched = self.expr(rule.condition, span)
            own += RULE + EXPLAIN
            if not (isinstance(rule.condition, ir.Lit) and rule.condition.value is False):
                own += MATCH + REASON
                for p in rule.reason:
                    if isinstance(p, str):
                        own += _linear(len(p))
                    else:
                        units, more = self.expr(p, span)
                        own += units
                        searched += more
                own += sum(_linear(len(t)) + 1 for t in rule.tags)
            rules.append(own)
            key = ("rule", rule.name)
            self.attributed[key] += own - searched
            self.labels.setdefault(key, (span, f"rule '{rule.name}'"))
        total = aggregates + sum(rules) + self.prologue()
        parts = sorted(
            (Part(units, *self.labels[key]) for key, units in self.attributed.items() if units),
            key=lambda p: (-p.units, p.span.path, p.span.line, p.span.column),
        )
        return PolicyCost(total, tuple(parts), tuple(rules), aggregates)

    def prologue(self) -> int:
        """Reading each aggregate value, the per-call set-up, one lookup per list."""
        reads = {i for r in self.policy.rules for i in r.reads}
        return 20 + 2 * len(reads) + LIST_LOOKUP * len(self.members)

    # -- aggregates -----------------------------------------------------------------------

    def aggregate_costs(self) -> int:
        total = 0
        windows: set[tuple[object, ...]] = set()
        written: set[tuple[object, ...]] = set()
        filtered: set[str] = set()
        for agg in self.policy.aggregates:
            spec = agg.spec
            ident = identity(spec)
            span = self.agg_sites.get(spec.id) or self.agg_sites.get(agg.base_id)
            where = span or Span("<policy>", 1, 1, 1, 1)
            units = WINDOW  # planned per window, even one the state reads again
            if (ident, spec.window.offset_s) not in windows:
                windows.add((ident, spec.window.offset_s))
                units += READ[spec.kind]
            if ident not in written:
                written.add(ident)
                units += WRITE[spec.kind]
            searched = 0
            if agg.base_id not in filtered:
                filtered.add(agg.base_id)
                for computed in (agg.where, agg.value):  # each once per declaration
                    if computed is not None:
                        more, more_searched = self.expr(computed, where)
                        units += more
                        searched += more_searched
            key = ("aggregate", agg.base_id)
            self.attributed[key] += units - searched
            if key not in self.labels:
                base_span = self.agg_sites.get(agg.base_id, where)
                self.labels[key] = (base_span, f"{spec.kind.value}() '{agg.base_id}'")
            total += units
        # A policy counting past decisions calls the state a second time once decided
        # (docs/state.md §11): the plan again, and each window over past decisions read
        # again beside its write (the write is counted above, once).
        after = [a for a in self.policy.aggregates if a.spec.after_decision]
        if after:
            again = WINDOW * len(self.policy.aggregates)
            again += sum(READ[a.spec.kind] for a in after)
            first = self.agg_sites.get(after[0].base_id) or Span("<policy>", 1, 1, 1, 1)
            key = ("aggregate", "\x1fdecisions")
            self.attributed[key] += again
            self.labels[key] = (first, "recording the decision for aggregates over decisions")
            total += again
        # How many windows of each declaration: said in its label.
        counts = Counter(agg.base_id for agg in self.policy.aggregates)
        for (kind, base), (span, what) in list(self.labels.items()):
            if kind == "aggregate" and isinstance(base, str) and counts[base] > 1:
                self.labels[(kind, base)] = (span, f"{what} read in {counts[base]} windows")
        return total

    # -- expressions ----------------------------------------------------------------------

    def expr(self, root: ir.Node, span: Span) -> tuple[int, int]:
        """Units to evaluate ``root`` once, memoised parts paid for the first time only, and
        how many of them are ``matches()`` calls (also listed under their own sites)."""
        total = searched = 0
        stack = [root]
        while stack:
            node = stack.pop()
            own = 0
            if isinstance(node, ir.Named) or (
                isinstance(node, ir.StrCall) and node.func == "matches"
            ):
                if node in self.done:
                    total += MEMO
                    continue
                self.done.add(node)
            own = self.node(node)
            if isinstance(node, ir.StrCall) and node.func == "matches":
                searched += own
                self.attribute_match(node, own, span)
            total += own
            stack.extend(ir.children(node))
        return total, searched

    def attribute_match(self, node: ir.StrCall, units: int, span: Span) -> None:
        key = ("matches", node)
        self.attributed[key] += units
        if key not in self.labels:
            pattern = str(node.args[1].value) if isinstance(node.args[1], ir.Lit) else ""
            n = min(chars(node.args[0]), MAX_INPUT)
            program = self.programs.get(pattern, 0)
            site = self.match_sites.get(node, span)
            self.labels[key] = (site, f"matches() ({n} characters x {program} RE2 instructions)")

    def node(self, node: ir.Node) -> int:
        """The work of ``node`` itself, without its operands."""
        match node:
            case ir.StrCall(func="matches", args=(text, ir.Lit(value=str() as pattern))):
                n = min(chars(text), MAX_INPUT)
                program = self.programs.get(pattern, 0)
                return PATTERN_CALL + n * (PATTERN_CHAR + program * PATTERN_STEP)
            case ir.StrCall(func="lower" | "upper", args=(text,)):
                return NODE + _linear(3 * chars(text))
            case ir.StrCall(func="starts_with" | "ends_with", args=(_, needle)):
                return NODE + _linear(chars(needle))
            case ir.StrCall(func="contains", args=(text, needle)):
                # CPython's search is linear for most inputs and at worst their product.
                return NODE + _linear(chars(text) * min(chars(needle), chars(text)) // 8)
            case ir.InList(value=ir.Fact(path="phone.e164"), list_name=name):
                self.members.add(name)
                return NODE
            case ir.InList():
                return LIST_LOOKUP
            case ir.ListLabel():
                return LABEL
            case ir.InSet(value=v) if v.type is ir.Type.STR:
                return NODE + _linear(chars(v))  # hashing a string made for this request
            case ir.Cmp(left=a, right=b) if a.type is ir.Type.STR:
                return NODE + _linear(min(chars(a), chars(b)))
            case ir.Named():
                return MEMO
            case ir.EventNumber():
                return NUMBER + _linear(ATTRIBUTE_CHARS)
        return NODE


def describe(cost: PolicyCost, budget: int, limit: int = 5) -> list[str]:
    """Lines for people: the total against the budget and the largest parts."""
    head = f"{cost.total:,} units a request" + (f" (budget {budget:,})" if budget > 0 else "")
    lines = [head]
    lines += [
        f"  {p.units:>12,}  {p.what} at {p.span.path}:{p.span.line}:{p.span.column}"
        for p in cost.parts[:limit]
    ]
    return lines
