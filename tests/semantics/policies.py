"""Hypothesis strategies for random policies, each both rule-file text and the model's
description of it.

Aggregates of every kind, single and composite keys, sliding windows and `today`, offsets
through `x.ago(D)` and `sustained(x > k, D)`, `where` filters (several aggregates that
differ only in their filter among them), distinct over every field, and `age()`. Every
value id is read by two probe rules, ``EXPR == 0`` and ``EXPR == 1`` (an unread aggregate
is left out of the plan, and rule tests can only show a value through the rules it fires).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from hypothesis import strategies as st
from semantics.events import POOL, TENANTS
from semantics.model import (
    DAY_S,
    Aggregate,
    Facts,
    Filter,
    Kind,
    Policy,
    decimal_valued,
    format_duration,
    value_id,
)

MAX_REACH_S = 30 * DAY_S  # the language's longest window plus offset
CONSTS = 'const SMS_CODE = "sms_code"\nconst WEB = "web"\nconst WIN_1H = 1h\n'


@dataclass(frozen=True, kw_only=True)
class Expr:
    """A filter: its canonical form, the ways to write it, what it means."""

    canonical: Hashable
    texts: tuple[str, ...]
    test: Callable[[Facts], bool]

    def filter(self) -> Filter:
        return Filter(canonical=self.canonical, test=self.test)


def _compare(fact: str, getter: Callable[[Facts], str], value: str, const: str = "") -> Expr:
    texts = [f'{fact} == "{value}"', f'"{value}" == {fact}']
    if const:
        texts += [f"{fact} == {const}", f"{const} == {fact}"]
    return Expr(
        canonical=("==", fact, value), texts=tuple(texts), test=lambda f: getter(f) == value
    )


ATOMS = (
    _compare("event.scene", lambda f: f.event.scene, "sms_code", "SMS_CODE"),
    _compare("event.scene", lambda f: f.event.scene, "login"),
    _compare("event.scene", lambda f: f.event.scene, "register"),
    _compare("event.app_id", lambda f: f.event.app_id, "shop"),
    _compare("event.device_id", lambda f: f.event.device_id, ""),
    _compare('event.attributes["channel"]', lambda f: f.event.attribute("channel"), "web", "WEB"),
    _compare("phone.segment_kind", lambda f: f.event.phone.segment_kind, "mvno"),
    Expr(
        canonical=("in", "event.scene", frozenset({"login", "register"})),
        texts=('event.scene in {"login", "register"}', 'event.scene in {"register", "login"}'),
        test=lambda f: f.event.scene in {"login", "register"},
    ),
    Expr(
        canonical=("!=", "event.app_id", ""),
        texts=('event.app_id != ""',),
        test=lambda f: f.event.app_id != "",
    ),
    Expr(canonical=("in", "vip"), texts=("phone in vip",), test=lambda f: "vip" in f.lists),
    Expr(
        canonical=("<", "event.local_hour", 12),
        texts=("event.local_hour < 12",),
        test=lambda f: f.local_hour < 12,
    ),
    Expr(
        canonical=("starts_with", "phone.national_number", "170"),
        texts=('phone.national_number.starts_with("170")',),
        test=lambda f: f.event.phone.national.startswith("170"),
    ),
)


def _not(a: Expr) -> Expr:
    return Expr(
        canonical=("not", a.canonical),
        texts=tuple(f"not ({t})" for t in a.texts),
        test=lambda f: not a.test(f),
    )


def _join(op: str, a: Expr, b: Expr) -> Expr:
    """`a and b` / `a or b`: the operands in either order are one filter (§3)."""
    texts = tuple(
        f"{x} {op} {y}"
        for p, q in ((a, b), (b, a))
        for x, y in itertools.product(p.texts[:2], q.texts[:2])
    )
    if op == "and":
        return Expr(
            canonical=(op, frozenset({a.canonical, b.canonical})),
            texts=texts,
            test=lambda f: a.test(f) and b.test(f),
        )
    return Expr(
        canonical=(op, frozenset({a.canonical, b.canonical})),
        texts=texts,
        test=lambda f: a.test(f) or b.test(f),
    )


def _two_facts(x: tuple[str, Expr, Expr]) -> bool:
    """`and`/`or` of two different facts (two tests of one fact may fold away)."""
    return bool(x[1].canonical[1] != x[2].canonical[1])  # type: ignore[index]


atoms = st.sampled_from(ATOMS)
filters: st.SearchStrategy[Expr] = st.one_of(
    atoms,
    atoms,
    atoms.map(_not),
    st.tuples(st.sampled_from(["and", "or"]), atoms, atoms)
    .filter(_two_facts)
    .map(lambda x: _join(*x)),
)

# (seconds or None for `today`, ways to write it)
WINDOWS: tuple[tuple[int | None, tuple[str, ...]], ...] = (
    (90, ("90s", "1m30s")),
    (600, ("10m",)),
    (3600, ("1h", "60m", "WIN_1H")),
    (10_800, ("3h",)),
    (DAY_S, ("1d", "24h")),
    (7 * DAY_S, ("7d", "1w")),
    (None, ("today",)),
)
KINDS: tuple[Kind, ...] = ("count", "count", "distinct", "run", "sum", "avg", "min", "max")
KEYS = (
    "number",
    "list vip",
    "segment",
    "prefix",
    "device",
    "ip",
    "ip/24",
    "ip/64",
    "app",
    'attribute "user_id"',
)
# What sum/avg/min/max add up, and the ways to write it.
VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("number", "amount"): ('event.number("amount")',),
    ("hour", ""): ("event.local_hour",),
}
FIELDS = {
    "app_id": ("event.app_id",),
    "device_id": ("event.device_id",),
    "ip": ("event.ip",),
    "scene": ("event.scene",),
    "phone": ("phone", "phone.e164"),
    "attr:channel": ('event.attributes["channel"]',),
    "ip.city": ("ip.city",),
}


@dataclass(frozen=True, kw_only=True)
class Decl:
    """One aggregate declaration as written, with what it means (``agg``)."""

    agg: Aggregate
    keys_text: str
    window_text: str
    field_text: str = ""
    where: Expr | None = None
    where_text: str = ""
    sustained: tuple[tuple[int, int], ...] = ()  # sustained(NAME > k, D) as (k, D)

    def text(self) -> str:
        window = f"over {self.window_text}"
        args = ", ".join(a for a in (self.field_text, self.keys_text, window) if a)
        where = f" where {self.where_text}" if self.where_text else ""
        return f"aggregate {self.agg.name} = {self.agg.kind}({args}){where}"


@dataclass(frozen=True, kw_only=True)
class Generated:
    """A policy all tenants share (their `vip` lists differ: ``lists[i]`` is tenant i's)."""

    decls: tuple[Decl, ...]
    ages: tuple[str, ...]
    timezone: str
    lists: tuple[frozenset[str], ...]

    def __repr__(self) -> str:
        lists = ", ".join(f"{t}: {sorted(n)}" for t, n in zip(TENANTS, self.lists, strict=True))
        return f"Generated(vip lists {{{lists}}}, policy:\n{self.text()})"

    def value_ids(self) -> list[str]:
        ids = [value_id(d.agg, o) for d in self.decls for o in d.agg.offsets]
        return ids + [f"age(per {k})" for k in self.ages]

    def meaning(self) -> dict[str, str]:
        """What each value id reads, for failure messages."""
        out = {}
        for d in self.decls:
            decl = d.text().removeprefix("aggregate ")
            for o in d.agg.offsets:
                back = f", read {format_duration(o)} back" if o else ""
                out[value_id(d.agg, o)] = f"{decl}{back}"
        return out

    def probe(self, index: int) -> str:
        """The expression that reads value id number ``index``."""
        n = sum(len(d.agg.offsets) for d in self.decls)
        if index >= n:
            return f"age(per {self.ages[index - n]})"
        d, o = [(d, o) for d in self.decls for o in d.agg.offsets][index]
        return d.agg.name if o == 0 else f"{d.agg.name}.ago({format_duration(o)})"

    def decimal_ids(self) -> frozenset[str]:
        """The value ids that read as decimals."""
        return frozenset(v for i, v in enumerate(self.value_ids()) if self.decimal(i))

    def decimal(self, index: int) -> bool:
        """Whether value id number ``index`` reads as a decimal."""
        n = sum(len(d.agg.offsets) for d in self.decls)
        if index >= n:
            return False
        d = [d for d in self.decls for _ in d.agg.offsets][index]
        return decimal_valued(d.agg)

    def probe_rules(self, index: int) -> tuple[str, str]:
        """The rules that fire when value id ``index`` is 0, and when it is 1."""
        return f"v{index}_0", f"v{index}_1"

    def text(self) -> str:
        lines = [f'settings {{ timezone = "{self.timezone}" }}', CONSTS]
        lines.append('list vip from "lists/vip.csv"')
        lines += [d.text() for d in self.decls]
        for i in range(len(self.value_ids())):
            expr = self.probe(i)
            unit = "s" if expr.startswith("age(") else ""
            # A decimal aggregate's values are millionths: its probes are 0 and 0.000001.
            ones = ("0", "0.000001") if self.decimal(i) else ("0", "1")
            for one, rule in zip(ones, self.probe_rules(i), strict=True):
                lines.append(f"rule {rule} {{ when {expr} == {one}{unit} then review }}")
        for d in self.decls:
            for j, (k, dur) in enumerate(d.sustained):
                lines.append(
                    f"shadow rule s_{d.agg.name}_{j} {{ when sustained({d.agg.name} > {k},"
                    f" {format_duration(dur)}) then block }}"
                )
        return "\n".join(lines) + "\n"

    def model(self, tenant: str) -> Policy:
        return Policy(
            aggregates=tuple(d.agg for d in self.decls),
            ages=self.ages,
            timezone=self.timezone,
            lists={"vip": self.lists[TENANTS.index(tenant)]},
        )

    def files(self, tenant: str) -> dict[str, str]:
        rows = "".join(f"{n},risk2\n" for n in sorted(self.lists[TENANTS.index(tenant)]))
        return {
            "policy.rf": self.text(),
            "lists/vip.csv": "entry,risk\n" + rows,
            # These policies test values, not cost: a few run() windows can cost more
            # than the default evaluation budget, so each takes the ceiling.
            "tenant.toml": "[limits]\ncost_budget = 10000000\n",
        }


@st.composite
def readers(
    draw: st.DrawFn, window: int | None
) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """(every offset read, the sustained() readers) for a window: ago() of one or two
    windows or of round durations, and sustained() over two or three windows."""
    size = DAY_S if window is None else window
    agos = [DAY_S, 2 * DAY_S]
    if window is not None:
        agos = sorted(d for d in {size, 2 * size, 1800, 3600, DAY_S} if size + d <= MAX_REACH_S)
    offsets = {0, *draw(st.lists(st.sampled_from(agos), max_size=2, unique=True))}
    sustained: tuple[tuple[int, int], ...] = ()
    if draw(st.integers(0, 2)) == 0:
        windows = draw(st.integers(2, 3))
        if windows * size <= MAX_REACH_S:
            sustained = ((draw(st.integers(0, 2)), windows * size),)
            offsets |= {j * size for j in range(1, windows)}
    return tuple(sorted(offsets)), sustained


def key_text(kind: str, arg: str) -> str:
    if kind == "ip" and arg:
        return f"ip/{arg}"
    if kind == "attribute":
        return f'attribute "{arg}"'
    return {"list": "list vip", "prefix": f"prefix {arg}"}.get(kind, kind)


@st.composite
def key_sets(draw: st.DrawFn, kind: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """(keys, how they are written)."""
    prefix = st.sampled_from(["3", "5", "7", "12"]).map(lambda n: ("prefix", n))
    if kind == "run":
        keys: tuple[tuple[str, str], ...] = (draw(st.one_of(st.just(("segment", "")), prefix)),)
    elif draw(st.integers(0, 9)) == 0:
        keys = (("tenant", ""),)
    else:
        names = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
        keys = tuple(
            draw(prefix)
            if n == "prefix"
            else ("list", "vip")
            if n == "list vip"
            else ("ip", n[3:])
            if n.startswith("ip/")
            else ("attribute", "user_id")
            if n.startswith("attribute")
            else (n, "")
            for n in names
        )
    texts = [key_text(*k) for k in keys]
    if len(keys) == 1:
        return keys, f"per {texts[0]}"
    if draw(st.booleans()):
        return keys, f"per ({', '.join(texts)})"
    return keys, ", ".join(f"per {t}" for t in texts)


@st.composite
def declarations(draw: st.DrawFn, name: str) -> Decl:
    kind: Kind = draw(st.sampled_from(KINDS))
    keys, keys_text = draw(key_sets(kind))
    field = field_text = ""
    value = ("", "")
    if kind == "distinct":
        field = draw(st.sampled_from(sorted(FIELDS)))
        field_text = draw(st.sampled_from(FIELDS[field]))
    elif kind in ("sum", "avg", "min", "max"):
        value = draw(st.sampled_from(sorted(VALUES)))
        field_text = draw(st.sampled_from(VALUES[value]))
    window, window_texts = draw(st.sampled_from(WINDOWS))
    where = draw(st.one_of(st.none(), filters))
    offsets, sustained = draw(readers(window))
    return Decl(
        agg=Aggregate(
            name=name,
            kind=kind,
            keys=keys,
            field=field,
            value=value,
            where=None if where is None else where.filter(),
            window=window,
            offsets=offsets,
        ),
        keys_text=keys_text,
        window_text=draw(st.sampled_from(window_texts)),
        field_text=field_text,
        where=where,
        where_text="" if where is None else draw(st.sampled_from(where.texts)),
        sustained=sustained,
    )


def with_filter(decl: Decl, name: str, where: Expr | None, text: str) -> Decl:
    """The same declaration under another name with another (or the same) filter."""
    agg = replace(decl.agg, name=name, where=None if where is None else where.filter())
    return replace(decl, agg=agg, where=where, where_text=text, sustained=())


@st.composite
def policies(draw: st.DrawFn, max_aggregates: int = 4) -> Generated:
    decls = [draw(declarations(f"a{i}")) for i in range(draw(st.integers(1, max_aggregates)))]
    # Siblings: the same declaration with only the filter changed (its own count), or the
    # filter written another way (one count under two names).
    for i, base in enumerate(list(decls)):
        if draw(st.integers(0, 2)) == 0:
            other = draw(st.one_of(st.none(), filters))
            text = "" if other is None else draw(st.sampled_from(other.texts))
            decls.append(with_filter(base, f"a{i}_f", other, text))
        if base.where is not None and draw(st.integers(0, 3)) == 0:
            text = draw(st.sampled_from(base.where.texts))
            decls.append(with_filter(base, f"a{i}_same", base.where, text))
    ages = tuple(
        draw(st.lists(st.sampled_from(["number", "device", "ip", "app"]), max_size=4, unique=True))
    )
    numbers = [p.e164 for p in POOL]
    lists = tuple(
        frozenset(draw(st.lists(st.sampled_from(numbers), max_size=4, unique=True)))
        for _ in TENANTS
    )
    return Generated(
        decls=tuple(decls),
        ages=ages,
        timezone=draw(st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York"])),
        lists=lists,
    )


# Edits (the stateful test) -------------------------------------------------------------


def _with_decl(gen: Generated, index: int, decl: Decl) -> Generated:
    decls = list(gen.decls)
    decls[index] = decl
    return replace(gen, decls=tuple(decls))


@st.composite
def edits(draw: st.DrawFn, gen: Generated, name: str) -> tuple[str, Generated]:
    """(what changed, the edited policy). ``name`` is a fresh aggregate name. Renames and
    filters written another way keep each identity (§3); the others start new counts or
    drop old ones."""
    i = draw(st.integers(0, len(gen.decls) - 1))
    decl = gen.decls[i]
    kinds = ["rename", "filter", "window", "add", "lists", "timezone"]
    if decl.where is not None:
        kinds.append("respell")
    if len(gen.decls) > 1:
        kinds.append("remove")
    kind = draw(st.sampled_from(kinds))
    if kind == "rename":
        agg = replace(decl.agg, name=name)
        return f"rename {decl.agg.name} to {name}", _with_decl(gen, i, replace(decl, agg=agg))
    if kind == "respell":
        assert decl.where is not None
        text = draw(st.sampled_from(decl.where.texts))
        return f"{decl.agg.name} where {text}", _with_decl(gen, i, replace(decl, where_text=text))
    if kind == "filter":
        expr = draw(st.one_of(st.none(), filters))
        text = "" if expr is None else draw(st.sampled_from(expr.texts))
        edited = replace(with_filter(decl, decl.agg.name, expr, text), sustained=decl.sustained)
        return f"{decl.agg.name} where {text or '(none)'}", _with_decl(gen, i, edited)
    if kind == "window":
        window, texts = draw(st.sampled_from(WINDOWS))
        offsets, sustained = draw(readers(window))
        agg = replace(decl.agg, window=window, offsets=offsets)
        text = draw(st.sampled_from(texts))
        edited = replace(decl, agg=agg, window_text=text, sustained=sustained)
        return f"{decl.agg.name} over {text}", _with_decl(gen, i, edited)
    if kind == "add":
        added = draw(declarations(name))
        return f"add {added.text()}", replace(gen, decls=(*gen.decls, added))
    if kind == "remove":
        return f"remove {decl.agg.name}", replace(gen, decls=gen.decls[:i] + gen.decls[i + 1 :])
    if kind == "lists":
        numbers = [p.e164 for p in POOL]
        lists = tuple(
            frozenset(draw(st.lists(st.sampled_from(numbers), max_size=4, unique=True)))
            for _ in TENANTS
        )
        return "vip lists", replace(gen, lists=lists)
    zone = draw(st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York"]))
    return f"timezone {zone}", replace(gen, timezone=zone)
