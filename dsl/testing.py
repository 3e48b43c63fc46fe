"""Rule unit tests kept beside a policy (``rules/<tenant>/tests/*.toml``), and explanations.

The file format (one or more ``[[case]]`` tables) is documented in docs/dsl.md.
:func:`load_cases` reads a file's text (``tomllib`` for the values, :mod:`dsl.toml_positions`
for where each key was written), so every problem in a case is a ``file:line:col`` error
at the key it is about, with a did-you-mean for misspelt names. The caller injects the
phone parser, so this module stays pure.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

from dsl.addresses import ip_version
from dsl.aggregates import given_value
from dsl.decision import Action, Decision
from dsl.diagnostics import Diagnostic, PolicyError, Severity
from dsl.durations import DurationError, parse_duration
from dsl.event_time import event_epoch
from dsl.facts import EventFacts, Facts, IpFacts, PhoneFacts
from dsl.ir import Type
from dsl.lists import NETWORKS, NUMBERS, ListView, kind_of
from dsl.pipeline import SyncState, decide_now
from dsl.policy import CompiledPolicy
from dsl.schema import IP_FIELDS, PHONE_FIELDS
from dsl.suggest import closest
from dsl.toml_guard import check_toml
from dsl.toml_positions import Path, Positions, locate

UNKNOWN = "unknown"
_ACTIONS = {"allow": Action.ALLOW, "review": Action.REVIEW, "block": Action.BLOCK}
_CASE_KEYS = (
    "name",
    "phone",
    "default_region",
    "tenant",
    "event",
    "phone_facts",
    "ip_facts",
    "aggregates",
    "lists",
    "history",
    "expect",
)
_HISTORY_KEYS = ("phone", "default_region", "event", "ip_facts", "ago", "repeat")
MAX_HISTORY = 10_000  # events a case's history may expand to (repeat counts each)
_EVENT_KEYS = ("scene", "app_id", "ip", "device_id", "occurred_at", "attributes")
_EXPECT_KEYS = ("action", "risk", "tags", "rules", "shadow", "unknown_inputs")
_PY_TYPES: dict[Type, type] = {Type.STR: str, Type.BOOL: bool, Type.INT: int}
_NOT_SETTABLE = {
    "e164": "it is the number itself (the phone being tested)",
    "masked": "it is derived from the number",
}
# Phone facts a case (or ``ringfence eval --fact``) may set: every field a policy can read
# (dsl/schema.py) that PhoneFacts holds, except the number itself.
PHONE_OVERRIDES: dict[str, type] = {
    name: _PY_TYPES[t]
    for name, t in PHONE_FIELDS.items()
    if name not in _NOT_SETTABLE and t in _PY_TYPES and name in {f.name for f in fields(PhoneFacts)}
}
# IP facts a case (or eval's --fact) may set: every field of IpFacts (dsl/schema.py).
IP_OVERRIDES: dict[str, type] = {
    name: _PY_TYPES[t] for name, t in IP_FIELDS.items() if name in {f.name for f in fields(IpFacts)}
}
INT_MAX = 2**63 - 1  # policies hold 64-bit integers
_A = {str: "a string", bool: "true or false", int: "an int"}


def _seconds(text: str) -> int | None:
    try:
        return parse_duration(text)
    except DurationError:
        return None


def _hint(name: str, candidates: Iterable[str]) -> str:
    pool = tuple(candidates)
    guess = closest(name, pool)
    if guess is not None:
        return f"; did you mean '{guess}'?"
    return f" (expected one of: {', '.join(pool)})" if pool else ""


def phone_fact_value(name: str, text: str, obj: str = "phone") -> str | bool | int:
    """A phone (or, with ``obj="ip"``, IP) fact written as text (``ringfence eval --fact``),
    typed as the policy reads it. Raises ValueError with the reason (a did-you-mean for an
    unknown name)."""
    if obj == "phone" and name in _NOT_SETTABLE:
        raise ValueError(f"phone.{name} cannot be set: {_NOT_SETTABLE[name]}")
    table = PHONE_OVERRIDES if obj == "phone" else IP_OVERRIDES
    want = table.get(name)
    if want is None:
        pool = [f"{obj}.{k}" for k in table]
        raise ValueError(f"unknown {obj} fact '{obj}.{name}'{_hint(f'{obj}.{name}', pool)}")
    if want is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{obj}.{name} is a bool: expected true or false, got {text!r}")
        return text.lower() == "true"
    if want is int:
        digits = text.removeprefix("-")
        if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
            raise ValueError(f"{obj}.{name} is an int: expected digits, got {text!r}")
        if abs(int(text)) > INT_MAX:
            raise ValueError(f"{obj}.{name} is out of range (at most {INT_MAX})")
        return int(text)
    return text


@dataclass(frozen=True, slots=True)
class Expectation:
    action: Action
    risk: int | None = None
    tags: tuple[str, ...] | None = None
    rules: tuple[str, ...] | None = None  # non-shadow rules that matched, in policy order
    shadow: tuple[str, ...] | None = None  # shadow rules that matched
    unknown_inputs: bool | None = None


@dataclass(frozen=True, slots=True)
class RuleCase:
    name: str
    where: str  # "path:line case[i] 'name'": for messages
    facts: Facts
    # As written; the others are computed (docs/state.md §7): from the history when there
    # is one, else as if the case's event were the first the state has seen.
    values: Mapping[str, int | None]
    lists: Mapping[str, Mapping[str, str] | None]  # list -> labels (on it) or None (off it)
    expect: Expectation
    history: tuple[Facts, ...] = ()  # earlier events, decided in order before the case's


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: RuleCase
    passed: bool
    decision: Decision | None
    failures: tuple[str, ...] = ()

    def report(self) -> str:
        """One line when it passed; the expected-vs-got diff when it did not."""
        status = "ok  " if self.passed else "FAIL"
        head = f"{status} {self.case.where}"
        return "\n".join([head, *(f"    {f}" for f in self.failures)])


@dataclass(frozen=True, slots=True)
class _Known:
    """The names a case may use, from the policy under test."""

    aggregates: tuple[str, ...]
    lists: tuple[str, ...]
    rules: tuple[str, ...]
    shadow_rules: tuple[str, ...]
    tags: tuple[str, ...]
    # The label columns of each loaded list (its file's header), when the caller has them.
    label_columns: Mapping[str, Sequence[str]]
    decimals: frozenset[str] = frozenset()  # aggregates read as decimals (avg, ...)
    signed: frozenset[str] = frozenset()  # aggregates that may be negative (sum, ...)

    @classmethod
    def of(cls, policy: CompiledPolicy, label_columns: Mapping[str, Sequence[str]]) -> _Known:
        return cls(
            policy.aggregate_ids,
            tuple(d.name for d in policy.lists),
            tuple(r.name for r in policy.rules if not r.shadow),
            tuple(r.name for r in policy.rules if r.shadow),
            tuple(dict.fromkeys(t for r in policy.rules for t in r.tags)),
            label_columns,
            policy.decimal_ids,
            policy.signed_ids,
        )


class _Problems:
    """Errors of one file, each placed at the key (or value) it is about."""

    def __init__(self, path: str, positions: Positions | None) -> None:
        self.path = path
        self.positions = positions
        self.found: list[Diagnostic] = []

    def line_of(self, at: Path) -> int:
        hit = self.positions.find(at) if self.positions is not None else None
        return hit[1].key.line if hit is not None else 1

    def add(self, at: Path, message: str, *, value: bool = False) -> None:
        hit = self.positions.find(at) if self.positions is not None else None
        if hit is None:
            self.found.append(Diagnostic(self.path, 1, 1, Severity.ERROR, message))
            return
        found_at, located = hit
        place = located.value if value and found_at == at else located.key
        self.found.append(
            Diagnostic(
                self.path,
                place.line,
                place.column,
                Severity.ERROR,
                message,
                place.end_line,
                place.end_column,
            )
        )


def load_cases(
    text: str,
    path: str,
    make_phone: Callable[[str, str], PhoneFacts],
    *,
    policy: CompiledPolicy | None = None,
    label_columns: Mapping[str, Sequence[str]] | None = None,
    make_ip: Callable[[str], IpFacts] | None = None,
) -> list[RuleCase]:
    """The cases of a rule-test file's text; raises PolicyError with every problem found,
    each at ``path:line:col``. With ``policy``, names (aggregates, lists, rules, tags) are
    checked against it and a local date-time is read in its time zone; with
    ``label_columns`` (list -> its file's label columns), so are the labels a case gives.
    ``make_ip`` says where ``event.ip`` is (the IP databases of ``ringfence test --ip-db``);
    without it only the address's version is known, and ``ip_facts`` set the rest."""
    limit = _too_big(text, path)
    if limit is not None:
        raise PolicyError([limit])
    excess = check_toml(text)
    if excess is not None:
        message = f"{excess.message} (a rule-test case needs a few levels)"
        raise PolicyError([Diagnostic(path, excess.line, excess.column, Severity.ERROR, message)])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PolicyError([_toml_error(err, text, path)]) from None
    except (RecursionError, ValueError) as err:  # a backstop behind check_toml
        message = f"not valid TOML ({type(err).__name__})"
        raise PolicyError([Diagnostic(path, 1, 1, Severity.ERROR, message)]) from None
    try:
        positions = locate(text)
    except RecursionError:  # pragma: no cover - tomllib refuses such nesting first
        positions = None
    return parse_cases(
        data,
        path,
        make_phone,
        positions=positions,
        policy=policy,
        label_columns=label_columns,
        make_ip=make_ip,
    )


# A rule-test file is a few cases written by hand. Limits keep a hostile one from taking
# the tools down: tomllib is quadratic in the parts of one dotted key.
MAX_FILE_CHARS = 1 << 20
MAX_LINE_CHARS = 10_000


def _too_big(text: str, path: str) -> Diagnostic | None:
    if len(text) > MAX_FILE_CHARS:
        return Diagnostic(
            path, 1, 1, Severity.ERROR, f"larger than {MAX_FILE_CHARS} characters: split it"
        )
    for number, line in enumerate(text.split("\n"), 1):
        if len(line) > MAX_LINE_CHARS:
            message = f"line longer than {MAX_LINE_CHARS} characters"
            return Diagnostic(path, number, 1, Severity.ERROR, message)
    return None


def _toml_error(err: tomllib.TOMLDecodeError, text: str, path: str) -> Diagnostic:
    message = str(err)
    line = col = 1
    where = message.rfind(" (at ")
    if where >= 0:
        tail = message[where + 5 : -1]
        message = message[:where]
        if tail.startswith("line "):
            nums = tail.removeprefix("line ").split(", column ")
            if len(nums) == 2 and all(n.isdigit() for n in nums):
                line, col = int(nums[0]), int(nums[1])
        elif tail == "end of document":
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
    if message.startswith("Cannot overwrite") or message.startswith("Cannot declare"):
        # tomllib finds a repeated key only at the end; the walker knows where it was.
        try:
            dup = locate(text).duplicate
        except RecursionError:  # pragma: no cover - the walker does not recurse deeply
            dup = None
        if dup is not None:
            shown, first, second = dup
            name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in shown)[1:]
            place = second.key
            return Diagnostic(
                path,
                place.line,
                place.column,
                Severity.ERROR,
                f"'{name}' is defined twice (first on line {first.key.line})",
                place.end_line,
                place.end_column,
            )
    return Diagnostic(path, line, col, Severity.ERROR, f"not valid TOML: {message}")


def parse_cases(
    data: Mapping[str, object],
    path: str,
    make_phone: Callable[[str, str], PhoneFacts],
    *,
    positions: Positions | None = None,
    policy: CompiledPolicy | None = None,
    label_columns: Mapping[str, Sequence[str]] | None = None,
    make_ip: Callable[[str], IpFacts] | None = None,
) -> list[RuleCase]:
    """Cases from a parsed TOML document; raises PolicyError naming every problem.
    Without ``positions`` every problem is reported at line 1."""
    problems = _Problems(path, positions)
    known = _Known.of(policy, label_columns or {}) if policy is not None else None
    timezone = policy.timezone if policy is not None else "UTC"
    for key in data:
        if key != "case":
            problems.add(
                (key,), f"unknown top-level key '{key}': a test file holds [[case]] tables"
            )
    raw_cases = data.get("case")
    if "case" in data and not (
        isinstance(raw_cases, list) and all(isinstance(c, Mapping) for c in raw_cases)
    ):
        problems.add(("case",), "write each case as a [[case]] table (an array of tables)")
        raise PolicyError(problems.found)
    if not raw_cases:
        problems.add(("case",), "expected one or more [[case]] tables")
        raise PolicyError(problems.found)
    assert isinstance(raw_cases, list)
    cases: list[RuleCase] = []
    for i, raw in enumerate(raw_cases):
        reader = _CaseReader(
            problems, ("case", i), make_phone, known, timezone, make_ip or _version_only
        )
        case = reader.read(raw, f"{path}:{problems.line_of(('case', i))} case[{i}]")
        if case is not None:
            cases.append(case)
    if problems.found:
        raise PolicyError(problems.found)
    return cases


_MISSING = object()


def _version_only(address: str) -> IpFacts:
    """Where an address is with no IP database: only its version is known."""
    return IpFacts(version=ip_version(address))


def _short(name: str) -> str:
    """A case name for messages: quoted, one line, at most 60 characters."""
    first = name.splitlines()[0] if name.strip() else name
    cut = first if len(first) <= 60 and first == name else first[:57].rstrip() + "..."
    return repr(cut)


class _CaseReader:
    """Reads one ``[[case]]`` table, reporting every problem rather than the first."""

    def __init__(
        self,
        problems: _Problems,
        at: Path,
        make_phone: Callable[[str, str], PhoneFacts],
        known: _Known | None,
        timezone: str,
        make_ip: Callable[[str], IpFacts] = _version_only,
    ) -> None:
        self.problems = problems
        self.at = at
        self.make_phone = make_phone
        self.make_ip = make_ip
        self.known = known
        self.timezone = timezone
        self.label = f"case[{at[-1]}]"
        self.ok = True

    def error(self, keys: Path, message: str, *, value: bool = False) -> None:
        self.ok = False
        self.problems.add(self.at + keys, f"{self.label}: {message}", value=value)

    def table(self, raw: object, keys: Path, allowed: Iterable[str] | None) -> Mapping[str, object]:
        """``raw`` as a table whose keys are all ``allowed`` (None: any); {} if it is not."""
        what = ".".join(str(k) for k in keys)
        if not isinstance(raw, Mapping):
            self.error(keys, f"{what} must be a table", value=True)
            return {}
        if allowed is None:
            return raw
        pool = tuple(allowed)
        for key in raw:
            if key not in pool:
                self.error((*keys, key), f"unknown key '{key}' in {what}{_hint(key, pool)}")
        return raw

    def string(self, t: Mapping[str, object], keys: Path, key: str) -> str:
        """``t[key]`` (``t`` is the table at ``keys``), a string; "" when absent."""
        v = t.get(key, "")
        if not isinstance(v, str):
            what = ".".join(str(k) for k in (*keys, key))
            self.error((*keys, key), f"{what} must be a string", value=True)
            return ""
        return v

    def read(self, raw: object, where: str) -> RuleCase | None:
        if not isinstance(raw, Mapping):  # pragma: no cover - parse_cases checks the array
            self.error((), "a case must be a table")
            return None
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            self.error(("name",) if "name" in raw else (), "every case needs a name", value=True)
            name = ""
        else:
            self.label = f"case[{self.at[-1]}] {_short(name)}"
        for key in raw:
            if key not in _CASE_KEYS:
                self.error((key,), f"unknown key '{key}' in the case{_hint(key, _CASE_KEYS)}")
        phone = self.phone(raw)
        tenant = self.string(raw, (), "tenant")
        event = self.event(raw.get("event", {}))
        values = self.values(raw.get("aggregates", {}))
        lists = self.lists(raw.get("lists", {}))
        history = self.history(raw.get("history", []), tenant, phone, event.occurred_at)
        expect = self.expect(raw.get("expect", _MISSING))
        if not self.ok or phone is None or expect is None:
            return None
        ip = self.ip_facts(raw, event.ip)
        return RuleCase(
            name=name,
            where=f"{where} {_short(name)}",
            facts=Facts(tenant, phone, event, ip),
            values=MappingProxyType(values),
            lists=MappingProxyType(lists),
            expect=expect,
            history=history,
        )

    def history(
        self, raw: object, tenant: str, phone: PhoneFacts | None, when: float
    ) -> tuple[Facts, ...]:
        """``history = [{ event = {...}, phone = "...", ago = "2h", repeat = 3 }, ...]``:
        the events decided before the case's, in order. ``phone`` defaults to the case's
        number and ``ago`` (a duration back from the case's time) to its time, unless the
        entry's own ``event.occurred_at`` says when."""
        if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
            self.error(("history",), "history must be an array of tables", value=True)
            return ()
        out: list[Facts] = []
        for i, entry in enumerate(raw):
            at: Path = ("history", i)
            t = self.table(entry, at, _HISTORY_KEYS)
            past = phone
            if "phone" in t:
                past = self.phone(t, at)
            event = self.event(t.get("event", {}), (*at, "event"))
            stamped = t.get("event", {})
            if not (isinstance(stamped, Mapping) and "occurred_at" in stamped):
                back = 0
                if "ago" in t:
                    ago = t["ago"]
                    try:
                        if not isinstance(ago, str):
                            raise DurationError('write it as a duration, such as "2h"')
                        back = parse_duration(ago)
                    except DurationError as err:
                        self.error((*at, "ago"), f"history[{i}].ago: {err}", value=True)
                event = replace(event, occurred_at=when - back)
            elif "ago" in t:
                self.error((*at, "ago"), f"history[{i}]: give ago or event.occurred_at, not both")
            repeat = t.get("repeat", 1)
            if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
                self.error((*at, "repeat"), f"history[{i}].repeat must be an int >= 1", value=True)
                repeat = 1
            if len(out) + repeat > MAX_HISTORY:
                self.error((*at, "repeat"), f"a case's history holds at most {MAX_HISTORY} events")
                return tuple(out)
            ip = self.ip_facts(t, event.ip, at)
            if past is not None:
                out.extend([Facts(tenant, past, event, ip)] * repeat)
        return tuple(out)

    def ip_facts(self, raw: Mapping[str, object], address: str, at: Path = ()) -> IpFacts:
        """Where ``event.ip`` is (``make_ip``), with what ``ip_facts`` sets."""
        found = self.make_ip(address)
        if "ip_facts" not in raw:
            return found
        keys = (*at, "ip_facts")
        t = self.table(raw["ip_facts"], keys, IP_OVERRIDES)
        changes: dict[str, object] = {}
        for key, v in t.items():
            want = IP_OVERRIDES.get(key)
            if want is None:
                continue  # reported as an unknown key
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                self.error((*keys, key), f"ip_facts.{key} must be {_A[want]}", value=True)
            elif want is int and isinstance(v, int) and not 0 <= v <= INT_MAX:
                self.error((*keys, key), f"ip_facts.{key} is out of range", value=True)
            else:
                changes[key] = v
        return replace(found, **changes)  # type: ignore[arg-type]

    def phone(self, raw: Mapping[str, object], at: Path = ()) -> PhoneFacts | None:
        number = raw.get("phone", _MISSING)
        region = self.string(raw, at, "default_region")
        if number is _MISSING:
            self.error(at, 'every case needs a phone = "..." number')
            return None
        if not isinstance(number, str):
            self.error((*at, "phone"), "phone must be a string", value=True)
            return None
        try:
            phone = self.make_phone(number, region)
        except ValueError as err:
            self.error((*at, "phone"), f"phone: {err}", value=True)
            return None
        if "phone_facts" not in raw:
            return phone
        t = self.table(raw["phone_facts"], ("phone_facts",), (*PHONE_OVERRIDES, *_NOT_SETTABLE))
        changes: dict[str, object] = {}
        for key, v in t.items():
            if key in _NOT_SETTABLE:
                self.error(("phone_facts", key), f"phone_facts.{key}: {_NOT_SETTABLE[key]}")
                continue
            want = PHONE_OVERRIDES.get(key)
            if want is None:
                continue  # reported as an unknown key
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                self.error(
                    ("phone_facts", key), f"phone_facts.{key} must be {_A[want]}", value=True
                )
            elif want is int and isinstance(v, int) and not -INT_MAX <= v <= INT_MAX:
                self.error(("phone_facts", key), f"phone_facts.{key} is out of range", value=True)
            else:
                changes[key] = v
        return replace(phone, **changes)  # type: ignore[arg-type]

    def event(self, raw: object, at: Path = ("event",)) -> EventFacts:
        t = self.table(raw, at, _EVENT_KEYS)
        values = {k: self.string(t, at, k) for k in ("scene", "app_id", "ip", "device_id")}
        when = 0.0
        if "occurred_at" in t:
            try:
                when = event_epoch(t["occurred_at"], self.timezone)
            except ValueError as err:
                self.error((*at, "occurred_at"), f"event.occurred_at: {err}", value=True)
        attrs: dict[str, str] = {}
        if "attributes" in t:
            a = self.table(t["attributes"], (*at, "attributes"), None)
            for k, v in a.items():
                if isinstance(v, str):
                    attrs[str(k)] = v
                else:
                    self.error(
                        (*at, "attributes", k),
                        f"event.attributes.{k} must be a string",
                        value=True,
                    )
        return EventFacts(occurred_at=when, attributes=MappingProxyType(attrs), **values)

    def values(self, raw: object) -> dict[str, int | None]:
        if not isinstance(raw, Mapping):
            self.error(("aggregates",), "aggregates must be a table", value=True)
            return {}
        out: dict[str, int | None] = {}
        ids = self.known.aggregates if self.known is not None else None
        for k, v in raw.items():
            at = ("aggregates", k)
            if ids is not None and k not in ids:
                have = f" (this policy has: {', '.join(ids) or 'none'})"
                guess = closest(k, ids)
                self.error(
                    at,
                    f"unknown aggregate '{k}'" + (f"; did you mean '{guess}'?" if guess else have),
                )
            elif v == UNKNOWN:
                out[k] = None
            elif self.known is not None and (k in self.known.decimals or k in self.known.signed):
                decimal = k in self.known.decimals
                # 12, 12.5 or "12.5" (a TOML float is read by its shortest text).
                text = repr(v) if isinstance(v, float) else str(v)
                try:
                    if isinstance(v, bool) or not isinstance(v, int | float | str):
                        raise ValueError("a number")
                    out[k] = given_value(text, decimal=decimal, signed=k in self.known.signed)
                except ValueError:
                    what = "a decimal (12.5)" if decimal else "an int"
                    self.error(at, f'aggregates.{k} must be {what} or "unknown"', value=True)
            elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= INT_MAX:
                out[k] = v
            elif k.startswith("age(") and isinstance(v, str) and _seconds(v) is not None:
                out[k] = _seconds(v)
            elif k.startswith("age("):
                self.error(
                    at,
                    f'aggregates."{k}" is a time: seconds (600), a duration such as "10m",'
                    ' or "unknown"',
                    value=True,
                )
            else:
                self.error(
                    at, f'aggregates.{k} must be a count (an int >= 0) or "unknown"', value=True
                )
        return out

    def lists(self, raw: object) -> dict[str, Mapping[str, str] | None]:
        if not isinstance(raw, Mapping):
            self.error(("lists",), "lists must be a table", value=True)
            return {}
        out: dict[str, Mapping[str, str] | None] = {}
        names = self.known.lists if self.known is not None else None
        for k, v in raw.items():
            at = ("lists", k)
            if names is not None and k not in names:
                self.error(at, f"unknown list '{k}'{_hint(k, names)}")
            elif v is False:
                out[k] = None
            elif v is True:
                out[k] = MappingProxyType({})
            elif isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values()):
                out[k] = MappingProxyType({str(a): str(b) for a, b in v.items()})
                columns = self.known.label_columns.get(k, None) if self.known else None
                for label in v:
                    if columns is not None and label not in columns:
                        self.error(
                            (*at, label),
                            f"list '{k}' has no label column '{str(label)[:60]}'"
                            + _hint(str(label), columns),
                        )
            else:
                self.error(
                    at, f"lists.{k} must be true, false or a table of string labels", value=True
                )
        return out

    def names(self, t: Mapping[str, object], key: str) -> tuple[str, ...] | None:
        if key not in t:
            return None
        v = t[key]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.error(("expect", key), f"expect.{key} must be a list of strings", value=True)
            return None
        return tuple(v)

    def expect(self, raw: object) -> Expectation | None:
        if raw is _MISSING:
            self.error((), "every case needs an [case.expect] table")
            return None
        t = self.table(raw, ("expect",), _EXPECT_KEYS)
        action = t.get("action", _MISSING)
        if action is _MISSING:
            self.error(("expect",), 'expect.action is required ("allow", "review" or "block")')
        elif not isinstance(action, str) or action not in _ACTIONS:
            guess = closest(action, _ACTIONS) if isinstance(action, str) else None
            self.error(
                ("expect", "action"),
                'expect.action must be "allow", "review" or "block"'
                + (f"; did you mean '{guess}'?" if guess else ""),
                value=True,
            )
        risk = t.get("risk")
        if risk is not None and (not isinstance(risk, int) or isinstance(risk, bool)):
            self.error(("expect", "risk"), "expect.risk must be an int", value=True)
        unknown = t.get("unknown_inputs")
        if unknown is not None and not isinstance(unknown, bool):
            self.error(
                ("expect", "unknown_inputs"),
                "expect.unknown_inputs must be true or false",
                value=True,
            )
        tags, rules, shadow = self.names(t, "tags"), self.names(t, "rules"), self.names(t, "shadow")
        if self.known is not None:
            self.check_names(tags, "tags", self.known.tags, "no rule has the tag")
            self.check_names(rules, "rules", self.known.rules, "no (non-shadow) rule")
            self.check_names(shadow, "shadow", self.known.shadow_rules, "no shadow rule")
        if not isinstance(action, str) or action not in _ACTIONS:
            return None
        return Expectation(
            _ACTIONS[action],
            risk if isinstance(risk, int) and not isinstance(risk, bool) else None,
            tags,
            rules,
            shadow,
            unknown if isinstance(unknown, bool) else None,
        )

    def check_names(
        self, given: tuple[str, ...] | None, key: str, pool: tuple[str, ...], what: str
    ) -> None:
        assert self.known is not None
        for i, name in enumerate(given or ()):
            if name in pool:
                continue
            note = ""
            if key == "rules" and name in self.known.shadow_rules:
                note = ": it is a shadow rule, list it under expect.shadow"
            elif key == "shadow" and name in self.known.rules:
                note = ": it is not a shadow rule, list it under expect.rules"
            else:
                note = _hint(name, pool) if pool else ""
            self.error(("expect", key, i), f"{what} '{name}'{note}", value=True)


@dataclass(frozen=True, slots=True)
class _Overlay:
    """A list as loaded, except that the case's number (its address, on a list of
    networks) is forced on (with labels) or off."""

    base: ListView | None
    keys: frozenset[str]  # the number, the address, or both for a list not loaded
    forced: Mapping[str, str] | None
    kind: str = NUMBERS
    size: int = field(default=0)

    def __contains__(self, key: object) -> bool:
        if key in self.keys:
            return self.forced is not None
        return self.base is not None and key in self.base

    def labels(self, key: str) -> Mapping[str, str] | None:
        if key in self.keys:
            return self.forced
        return None if self.base is None else self.base.labels(key)

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else 0


def run_case(
    policy: CompiledPolicy,
    case: RuleCase,
    lists: Mapping[str, ListView],
    state: SyncState,
) -> CaseResult:
    """Decide one case through the decision pipeline and compare; failures read as
    ``what: expected X, got Y``. ``state`` is a fresh, empty state (the memory backend):
    the case's history is decided into it, then the case's event reads its values, as
    docs/state.md §7 states; values the case writes under ``aggregates`` win."""
    ids = set(policy.aggregate_ids)
    declared = {d.name for d in policy.lists}
    problems = [
        f"unknown aggregate '{k}' (this policy has: {', '.join(sorted(ids)) or 'none'})"
        for k in case.values
        if k not in ids
    ]
    problems += [f"unknown list '{k}'" for k in case.lists if k not in declared]
    if problems:
        return CaseResult(case, False, None, tuple(problems))
    views: dict[str, ListView] = dict(lists)
    number, address = case.facts.phone.e164, case.facts.event.ip
    for name, labels in case.lists.items():
        base = lists.get(name)
        kind = kind_of(base)
        # A list the caller did not load (a cookbook recipe): whichever the policy asks.
        keys = {number, address} if base is None else {address if kind == NETWORKS else number}
        views[name] = _Overlay(base, frozenset(keys - {""}), labels, kind)
    tenant = case.facts.tenant or policy.tenant
    for past in case.history:
        decide_now(policy, views, replace(past, tenant=tenant), state, record=True)
    facts = replace(case.facts, tenant=tenant)
    decided = decide_now(policy, views, facts, state, record=False, given=case.values, explain=True)
    passed, failures = _compare(case.expect, decided.decision)
    return CaseResult(case, passed, decided.decision, failures)


def _compare(exp: Expectation, d: Decision) -> tuple[bool, tuple[str, ...]]:
    fails: list[str] = []
    if d.action is not exp.action:
        fails.append(f"action: expected {exp.action.name.lower()}, got {d.action.name.lower()}")
    if exp.risk is not None and d.risk_level != exp.risk:
        fails.append(f"risk: expected {exp.risk}, got {d.risk_level}")
    if exp.tags is not None and sorted(set(exp.tags)) != sorted(d.tags):
        fails.append(_set_diff("tags", exp.tags, d.tags))
    live = tuple(m.rule for m in d.matches if not m.shadow)
    if exp.rules is not None and sorted(exp.rules) != sorted(live):
        fails.append(_set_diff("rules", exp.rules, live))
    shadow = tuple(m.rule for m in d.matches if m.shadow)
    if exp.shadow is not None and sorted(exp.shadow) != sorted(shadow):
        fails.append(_set_diff("shadow rules", exp.shadow, shadow))
    if exp.unknown_inputs is not None and exp.unknown_inputs != d.unknown_inputs:
        fails.append(f"unknown_inputs: expected {exp.unknown_inputs}, got {d.unknown_inputs}")
    if fails:
        fails.append("explanation:")
        fails.extend("  " + line for line in explain_text(d).splitlines())
    return not fails, tuple(fails)


def _set_diff(what: str, expected: tuple[str, ...], got: tuple[str, ...]) -> str:
    missing = [x for x in expected if x not in got]
    extra = [x for x in got if x not in expected]
    notes = [f"missing {', '.join(missing)}"] if missing else []
    notes += [f"unexpected {', '.join(extra)}"] if extra else []
    return f"{what}: expected [{', '.join(expected)}], got [{', '.join(got)}] ({'; '.join(notes)})"


def explain_text(decision: Decision) -> str:
    """A decision for people: the verdict and what decided it, the matches with reasons,
    then every rule."""
    tags = ", ".join(decision.tags) or "-"
    score = f"  score {decision.score}" if decision.score else ""
    lines = [
        f"decision: {decision.action.name.lower()}  risk {decision.risk_level}  tags {tags}"
        + score,
    ]
    if decision.decided_by:
        lines.append(f"decided by: {decision.decided_by}")
    if decision.unknown_inputs:
        lines.append("note: some inputs were unknown (an aggregate missing, or a division by 0)")
    if decision.failed_rules:
        lines.append("note: failed while evaluating: " + ", ".join(decision.failed_rules))
    if decision.matches:
        lines.append("matched:")
        for m in decision.matches:
            shadow = " (shadow)" if m.shadow else ""
            action = m.action.name.lower() if m.action else "score"
            extra = "".join(
                (
                    f" priority {m.priority}" if m.priority else "",
                    f" score {m.score}" if m.score else "",
                )
            )
            lines.append(f"  {action:<6} {m.rule}{shadow}{extra}: {m.reason}")
    else:
        lines.append("matched: nothing")
    if decision.trace:
        lines.append("rules:")
        for t in decision.trace:
            value = "error" if t.error else "unknown" if t.value is None else str(t.value).lower()
            mark = "x" if t.matched else " "
            detail = f"  ({t.detail})" if t.detail else ""
            lines.append(f"  [{mark}] {t.rule}: {value}{detail}")
    return "\n".join(lines)
