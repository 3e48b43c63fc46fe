"""The language's vocabulary for tools: keywords from the grammar, facts and helpers from
:mod:`dsl.schema`, each with a one-line doc.

Editors (completion, hover, the TextMate grammar) read these tables instead of keeping a
copy of the language: a keyword added to ``grammar.lark`` or a fact added to the schema
shows up in them at once. Docs for names the schema gains later default to "" and
``tests/dsl/test_dsl_reference.py`` fails until one is written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from lark import Lark
from lark.grammar import NonTerminal, Terminal
from lark.lexer import PatternStr

from dsl import schema
from dsl.durations import UNITS
from dsl.ir import Type
from dsl.options import CompileOptions


@dataclass(frozen=True, slots=True)
class Entry:
    """One name a policy can write, with what it is."""

    name: str  # as written: "phone.segment_kind", "when", "count"
    detail: str  # the type or signature: "string", "count(per KEY, over WINDOW)"
    doc: str


@dataclass(frozen=True, slots=True)
class Keywords:
    """The grammar's reserved words, grouped by where they start something."""

    items: tuple[str, ...]  # start a top-level item: settings, import, const, rule, ...
    clauses: tuple[str, ...]  # start a rule clause: when, then, risk, ...
    operators: tuple[str, ...]  # and, or, not, in, between
    literals: tuple[str, ...]  # true, false
    other: tuple[str, ...]  # from, per, over, where, override, ...

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.items, *self.clauses, *self.operators, *self.literals, *self.other)


_OPERATOR_WORDS = frozenset({"and", "or", "not", "in", "between"})
_LITERAL_WORDS = frozenset({"true", "false"})


@functools.cache
def _grammar() -> Lark:
    text = resources.files("dsl").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", lexer="basic", start=["start"])


@functools.cache
def keywords() -> Keywords:
    """Classify every word-shaped literal terminal of ``grammar.lark``."""
    lark = _grammar()
    words = {
        t.name: t.pattern.value
        for t in lark.terminals
        if isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier()
    }
    expansions: dict[str, list[list[str]]] = {}
    for rule in lark.rules:
        expansions.setdefault(rule.origin.name, []).append(
            [s.name for s in rule.expansion if isinstance(s, Terminal | NonTerminal)]
        )

    def first_words(symbol: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if symbol in words:
            return {words[symbol]}
        if symbol in seen or symbol not in expansions:
            return set()
        out: set[str] = set()
        for exp in expansions[symbol]:
            if exp:
                out |= first_words(exp[0], seen | {symbol})
        return out

    def ordered(found: set[str]) -> tuple[str, ...]:
        order = list(dict.fromkeys(words.values()))
        return tuple(sorted(found, key=order.index))

    items = first_words("item")
    clauses = first_words("clause") - items
    operators = {w for w in words.values() if w in _OPERATOR_WORDS}
    literals = {w for w in words.values() if w in _LITERAL_WORDS}
    other = set(words.values()) - items - clauses - operators - literals
    return Keywords(
        ordered(items), ordered(clauses), ordered(operators), ordered(literals), ordered(other)
    )


# -- docs ------------------------------------------------------------------------------------

KEYWORD_DOCS: dict[str, str] = {
    "settings": 'Policy settings, once per tenant: `settings { timezone = "Asia/Shanghai" }`.',
    "import": 'Use a shared library file: `import "_shared/segments.rf"`.',
    "const": "A constant, folded at compile time: `const LIMIT = BASE * 3`.",
    "condition": (
        "A named condition, checked once and inlined where a rule uses it:"
        " `condition new_number = age(per number) < 1h`."
    ),
    "list": 'An intelligence list: `list NAME from "lists/file.csv"`.',
    "from": "The file a list is read from.",
    "aggregate": "A counter over a time window: `aggregate NAME = count(per number, over 1h)`.",
    "per": "What an aggregate is counted per (its key).",
    "over": "The time window of an aggregate: a duration, a duration const, or `today`.",
    "where": "Which events feed an aggregate: a condition on facts (never on aggregates).",
    "shadow": "A shadow rule is evaluated and reported but never changes the decision.",
    "rule": "A rule: `rule NAME { when ... then ... }`.",
    "when": "The rule's condition (required): a bool expression.",
    "then": "The rule's action: allow, review or block (required unless the rule has a score).",
    "override": "`then allow override`: when it matches, the decision is allow.",
    "risk": "Risk level 0..4 of the rule (default 0).",
    "tags": 'Tags the rule adds to the decision: `tags "a", "b"`.',
    "reason": "Text shown to callers and logged; `{expr}` interpolates.",
    "on_error": "What an unknown condition does: skip, fire, allow, review or block.",
    "priority": (
        "`priority 10` (-1000..1000, default 0): the highest-priority matching rule's action"
        " wins, whatever its severity."
    ),
    "score": (
        "`score 30` (-1000..1000): added up over the matching rules; review_score and"
        " block_score in settings turn the sum into an action."
    ),
    "and": "Both sides true (Kleene logic with unknown aggregates).",
    "or": "Either side true (Kleene logic with unknown aggregates).",
    "not": "Negation; also `not in`.",
    "in": 'Membership in a list or a set: `phone in LIST`, `x in {"a", "b"}`.',
    "between": "`x between lo and hi` is `x >= lo and x <= hi`.",
    "true": "The bool true.",
    "false": "The bool false.",
}

_FACT_DOCS: dict[str, str] = {
    "phone.e164": "The number in E.164, `+8617012345678` (not allowed in reasons).",
    "phone.valid": "Parsed, and a valid, assigned number.",
    "phone.region": "ISO 3166 region of the number, `CN`.",
    "phone.number_type": "`mobile`, `fixed_line`, `fixed_line_or_mobile`, `voip`, ..., `unknown`.",
    "phone.carrier": "The carrier's name, when known.",
    "phone.segment_kind": (
        "CN segment kind: `mobile`, `mvno`, `data_only`, `iot`, `satellite`, `emergency`,"
        ' or `""` outside CN.'
    ),
    "phone.segment_prefix": 'The segment-table prefix that matched (`1703`), `""` if none.',
    "phone.country_code": "The country calling code, `86`.",
    "phone.national_number": "The national significant number (not allowed in reasons).",
    "phone.masked": "The number with its middle digits hidden, `+86170****5678`: safe in reasons.",
    "phone.province": (
        "Home province of a Chinese number (归属地) as ISO 3166-2, `CN-JS`;"
        ' `""` where only the country is known and outside China. Compare with `ip.province`.'
    ),
    "phone.province_name": "The home province's name, `江苏省`.",
    "phone.city": (
        "Home city of a Chinese number, its short name without 市/地区/自治州: `常州`, `北京`;"
        ' `""` when unknown. Compare with `ip.city`.'
    ),
    "phone.city_name": "The home city's full name, `常州市`.",
    "ip.version": "4 or 6 for the event's IP address; 0 when event.ip is empty or not an address.",
    "ip.country": (
        "Country of the event's IP (ISO 3166-1 alpha-2, `CN`), from the IP databases;"
        ' `""` if unknown.'
    ),
    "ip.province": (
        "Province (region) of the event's IP as ISO 3166-2, `CN-JS`, the form of"
        ' `phone.province`; `""` if unknown.'
    ),
    "ip.province_name": "The IP's province name, `江苏省`.",
    "ip.city": "City of the event's IP; in China the short name as `phone.city` has it, `常州`.",
    "ip.city_name": "The IP's city name as the database gives it, `常州市`.",
    "ip.asn": "Autonomous system number of the IP's network, `4134`; 0 if unknown.",
    "ip.org": 'Organisation of that autonomous system, `CHINANET-BACKBONE`; `""` if unknown.',
    "event.scene": 'The scene of the event (`register`, `login`, `sms_code`, ...), `""` if absent.',
    "event.app_id": 'The calling app, `""` if absent.',
    "event.ip": 'The client IP, `""` if absent.',
    "event.device_id": 'The device id, `""` if absent.',
    "event.occurred_at": "When the event happened: seconds since the epoch.",
    "event.local_hour": "Hour of the day 0..23 in the policy time zone.",
    "event.local_weekday": "Day of the week 1 (Monday)..7 (Sunday) in the policy time zone.",
    "event.attributes": 'A caller-defined attribute, by constant key: `event.attributes["k"]`.',
    "tenant": "The tenant the request is for.",
}

_HELPER_DOCS: dict[str, str] = {
    "lower": "The string in lower case.",
    "upper": "The string in upper case.",
    "starts_with": "Whether the string starts with the argument.",
    "ends_with": "Whether the string ends with the argument.",
    "contains": "Whether the string contains the argument.",
    "matches": (
        'Whether the RE2 regular expression (a constant, best a raw string: r"^curl/")'
        " matches somewhere in the string; anchor with ^ and $."
    ),
    "phone.starts_with": "Whether the E.164 number starts with the argument (`+` optional).",
    "phone.prefix": "The first N digits of the E.164 number, without `+` (not in reasons).",
    "label": (
        "LIST.label(\"column\"): that label of the number's list entry (of the address's, for"
        ' a list of networks), `""` if not on it.'
    ),
    "ago": "AGG.ago(1h): the aggregate over the same-sized window ending that long ago.",
    "sustained": (
        "sustained(COND, 3h): COND now and with every aggregate in it shifted back one window,"
        " two windows, ... to cover the duration."
    ),
    "age": (
        "age(per number): how long ago this tenant first saw the number (also per device,"
        ' per ip, per app, per attribute "NAME"); 0s the first time. Remembered for 30 days.'
    ),
}

_AGG_KIND_DOCS: dict[str, tuple[str, str]] = {
    "count": ("count(per KEY, over WINDOW)", "Events in the window."),
    "distinct": (
        "distinct(FIELD, per KEY, over WINDOW)",
        "Distinct values of FIELD in the window (event.app_id, event.device_id, event.ip,"
        " event.scene, phone, phone.province, phone.city, ip.country, ip.province, ip.city,"
        ' event.attributes["k"]).',
    ),
    "run": (
        "run(per segment | prefix N, over WINDOW)",
        "Length of the run of consecutive numbers around this one seen in the window.",
    ),
    "sum": (
        "sum(VALUE, per KEY, over WINDOW)",
        'The sum of a number of each event (event.number("amount")) in the window: 0 for'
        " none, unknown past ±9,007,199,254.740991; an int for int values, else a decimal.",
    ),
    "avg": (
        "avg(VALUE, per KEY, over WINDOW)",
        "The mean of a number of each event in the window, a decimal rounded half to even"
        " at the sixth place; unknown for none.",
    ),
    "min": (
        "min(VALUE, per KEY, over WINDOW)",
        "The least number of an event in the window; unknown for none.",
    ),
    "max": (
        "max(VALUE, per KEY, over WINDOW)",
        "The greatest number of an event in the window; unknown for none.",
    ),
}

_KEY_KIND_DOCS: dict[str, tuple[str, str]] = {
    "number": ("per number", "The phone number (hashed by the state backend)."),
    "list": (
        "per list NAME",
        "A list: only events whose number (address, for a list of networks) is on it feed it.",
    ),
    "segment": ("per segment", "The CN segment-table prefix that matched."),
    "prefix": ("per prefix N", "The first N digits of the E.164 number (1..15)."),
    "device": ("per device", "The event's device id."),
    "ip": (
        "per ip | ip/N",
        "The event's IP; `per ip/24` its IPv4 /24 network, `per ip/64` its IPv6 /64.",
    ),
    "app": ("per app", "The event's app id."),
    "tenant": ("per tenant", "The whole tenant."),
    "attribute": (
        'per attribute "NAME"',
        "An event attribute's value (a user id); events without it do not feed the window.",
    ),
}

_ACTION_DOCS: dict[str, str] = {
    "allow": "Let the event through.",
    "review": "Send the event to manual review.",
    "block": "Refuse the event.",
}

_ON_ERROR_DOCS: dict[str, str] = {
    "skip": "An unknown condition does not match (the default).",
    "fire": "An unknown condition matches with the rule's own action.",
}

_SETTING_DOCS: dict[str, str] = {
    "timezone": 'IANA time zone for `today` and `event.local_hour`, e.g. "Asia/Shanghai".',
    "default_action": "The decision when no rule decides: allow (the default), review or block.",
    "review_score": "Summed rule scores at or above this make a review (unset: scores decide"
    " nothing).",
    "block_score": "Summed rule scores at or above this make a block.",
}


# What a fact's name starts with: `phone.x`, `event.x`, `ip.x`.
FACT_OBJECTS = ("phone", "event", "ip")


def _type_word(t: Type) -> str:
    return t.value


def facts() -> tuple[Entry, ...]:
    """Every fact a policy can read, with its type, in schema order."""
    out = [
        Entry(f"phone.{n}", _type_word(t), _FACT_DOCS.get(f"phone.{n}", ""))
        for n, t in schema.PHONE_FIELDS.items()
    ]
    out += [
        Entry(f"event.{n}", _type_word(t), _FACT_DOCS.get(f"event.{n}", ""))
        for n, t in schema.EVENT_FIELDS.items()
    ]
    out.append(Entry("event.attributes", "string", _FACT_DOCS["event.attributes"]))
    out += [
        Entry(f"ip.{n}", _type_word(t), _FACT_DOCS.get(f"ip.{n}", ""))
        for n, t in schema.IP_FIELDS.items()
    ]
    out.append(Entry("tenant", "string", _FACT_DOCS["tenant"]))
    return tuple(out)


def _signature(name: str, params: tuple[Type, ...], result: Type) -> str:
    return f"{name}({', '.join(_type_word(p) for p in params)}) -> {_type_word(result)}"


def string_helpers() -> tuple[Entry, ...]:
    return tuple(
        Entry(n, _signature(n, p, r), _HELPER_DOCS.get(n, ""))
        for n, (p, r) in schema.STRING_METHODS.items()
    )


def phone_helpers() -> tuple[Entry, ...]:
    return tuple(
        Entry(n, _signature(n, p, r), _HELPER_DOCS.get(f"phone.{n}", ""))
        for n, (p, r) in schema.PHONE_METHODS.items()
    )


LIST_HELPER = Entry("label", 'label("column") -> string', _HELPER_DOCS["label"])
EVENT_HELPER = Entry(
    "number",
    'number("key") -> decimal',
    'event.number("amount"): the attribute read as a decimal: an optional minus, digits,'
    " an optional point and digits (rounded half to even at the sixth place), below"
    ' 1,000,000,000 in size; unknown when absent or anything else ("1e5", "NaN", " 5").',
)
AGGREGATE_HELPER = Entry("ago", "ago(duration) -> int", _HELPER_DOCS["ago"])

# Typed signatures of the built-in functions; schema.FUNCTIONS has the untyped ones.
_FUNCTION_SIGNATURES: dict[str, str] = {
    "sustained": "sustained(bool, duration) -> bool",
    "age": "age(per "
    + " | ".join(
        'attribute "NAME"' if k == "attribute" else k
        for k in schema.KEY_KINDS
        if k in schema.AGE_KEYS
    )
    + ") -> duration",
}


def functions() -> tuple[Entry, ...]:
    """The built-in functions (``sustained``, ``age``), in schema order."""
    return tuple(
        Entry(n, _FUNCTION_SIGNATURES.get(n, sig), _HELPER_DOCS.get(n, ""))
        for n, sig in schema.FUNCTIONS.items()
    )


FUNCTIONS = functions()


def aggregate_kinds() -> tuple[Entry, ...]:
    return tuple(Entry(k, *_AGG_KIND_DOCS.get(k, (f"{k}(...)", ""))) for k in schema.AGG_KINDS)


def key_kinds() -> tuple[Entry, ...]:
    return tuple(Entry(k, *_KEY_KIND_DOCS.get(k, (f"per {k}", ""))) for k in schema.KEY_KINDS)


def network_keys() -> tuple[Entry, ...]:
    """``per ip/24`` and ``per ip/64``: the networks most policies count by."""
    return (
        Entry("ip/24", "per ip/N", "The event's IPv4 /24 network (N up to 32: IPv4)."),
        Entry("ip/64", "per ip/N", "The event's IPv6 /64 network (N above 32: IPv6)."),
    )


def age_keys() -> tuple[Entry, ...]:
    """The keys ``age(per KEY)`` accepts."""
    return tuple(e for e in key_kinds() if e.name in {k.value for k in schema.AGE_KEYS})


def actions() -> tuple[Entry, ...]:
    return tuple(Entry(a, "action", _ACTION_DOCS.get(a, "")) for a in schema.ACTIONS)


def on_error_values() -> tuple[Entry, ...]:
    return tuple(
        Entry(v, "on_error", _ON_ERROR_DOCS.get(v) or _ACTION_DOCS.get(v, ""))
        for v in schema.ON_ERROR
    )


def settings() -> tuple[Entry, ...]:
    return tuple(
        Entry(n, _type_word(t), _SETTING_DOCS.get(n, "")) for n, t in schema.SETTINGS.items()
    )


def duration_units() -> tuple[Entry, ...]:
    words = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    return tuple(Entry(u, f"{size} s", words.get(u, "")) for u, size in UNITS.items())


def max_window_s() -> int:
    """The longest window (plus offset) the checker accepts by default."""
    return CompileOptions().max_window_s


def fact(name: str) -> Entry | None:
    return next((f for f in facts() if f.name == name), None)
