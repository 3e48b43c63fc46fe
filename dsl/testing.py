"""Rule unit tests kept beside a policy (``rules/<tenant>/tests/*.toml``), and explanations.

The file format (one or more ``[[case]]`` tables) is documented in docs/dsl.md. The caller
reads the TOML (tomllib) and injects the phone parser, so this module stays pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from dsl.decision import Action, Decision
from dsl.diagnostics import Diagnostic, PolicyError, Severity
from dsl.facts import EventFacts, Facts, PhoneFacts
from dsl.lists import ListView
from dsl.policy import CompiledPolicy

UNKNOWN = "unknown"
_ACTIONS = {"allow": Action.ALLOW, "review": Action.REVIEW, "block": Action.BLOCK}
_CASE_KEYS = frozenset(
    {
        "name",
        "phone",
        "default_region",
        "tenant",
        "event",
        "phone_facts",
        "aggregates",
        "lists",
        "expect",
    }
)
_EVENT_KEYS = frozenset({"scene", "app_id", "ip", "device_id", "occurred_at", "attributes"})
_EXPECT_KEYS = frozenset({"action", "risk", "tags", "rules", "shadow", "unknown_inputs"})
_PHONE_OVERRIDES = {
    "valid": bool,
    "region": str,
    "number_type": str,
    "carrier": str,
    "segment_kind": str,
    "segment_prefix": str,
    "country_code": int,
    "national_number": str,
}


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
    where: str  # "path case[i]": for messages
    facts: Facts
    values: Mapping[str, int | None]  # as written; unlisted aggregates are 0
    lists: Mapping[str, Mapping[str, str] | None]  # list -> labels (on it) or None (off it)
    expect: Expectation


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


class _CaseError(Exception):
    pass


def _table(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _CaseError(f"{what} must be a table")
    return value


def _strs(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _CaseError(f"{what} must be a list of strings")
    return tuple(value)


def _check_keys(table: Mapping[str, object], allowed: frozenset[str], what: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise _CaseError(f"unknown key(s) in {what}: {', '.join(extra)}")


def _event(raw: object) -> EventFacts:
    t = _table(raw, "event")
    _check_keys(t, _EVENT_KEYS, "event")
    attrs = _table(t.get("attributes", {}), "event.attributes")
    if not all(isinstance(v, str) for v in attrs.values()):
        raise _CaseError("event.attributes values must be strings")
    when = t.get("occurred_at", 0)
    if not isinstance(when, int | float) or isinstance(when, bool):
        raise _CaseError("event.occurred_at must be seconds since the epoch")
    fields = {}
    for k in ("scene", "app_id", "ip", "device_id"):
        v = t.get(k, "")
        if not isinstance(v, str):
            raise _CaseError(f"event.{k} must be a string")
        fields[k] = v
    return EventFacts(
        occurred_at=float(when),
        attributes=MappingProxyType({str(k): str(v) for k, v in attrs.items()}),
        **fields,
    )


def _phone_overrides(phone: PhoneFacts, raw: object) -> PhoneFacts:
    t = _table(raw, "phone_facts")
    _check_keys(t, frozenset(_PHONE_OVERRIDES), "phone_facts")
    for k, v in t.items():
        want = _PHONE_OVERRIDES[k]
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            raise _CaseError(f"phone_facts.{k} must be a {want.__name__}")
    return replace(phone, **dict(t))  # type: ignore[arg-type]


def _values(raw: object) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for k, v in _table(raw, "aggregates").items():
        if v == UNKNOWN:
            out[k] = None
        elif isinstance(v, int) and not isinstance(v, bool):
            out[k] = v
        else:
            raise _CaseError(f'aggregates.{k} must be an int or "unknown"')
    return out


def _lists(raw: object) -> dict[str, Mapping[str, str] | None]:
    out: dict[str, Mapping[str, str] | None] = {}
    for k, v in _table(raw, "lists").items():
        if v is False:
            out[k] = None
        elif v is True:
            out[k] = MappingProxyType({})
        elif isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values()):
            out[k] = MappingProxyType({str(a): str(b) for a, b in v.items()})
        else:
            raise _CaseError(f"lists.{k} must be true, false or a table of string labels")
    return out


def _expect(raw: object) -> Expectation:
    t = _table(raw, "expect")
    _check_keys(t, _EXPECT_KEYS, "expect")
    action = t.get("action")
    if action not in _ACTIONS:
        raise _CaseError('expect.action must be "allow", "review" or "block"')
    assert isinstance(action, str)
    risk = t.get("risk")
    if risk is not None and (not isinstance(risk, int) or isinstance(risk, bool)):
        raise _CaseError("expect.risk must be an int")
    unknown = t.get("unknown_inputs")
    if unknown is not None and not isinstance(unknown, bool):
        raise _CaseError("expect.unknown_inputs must be true or false")
    return Expectation(
        _ACTIONS[action],
        risk,
        _strs(t["tags"], "expect.tags") if "tags" in t else None,
        _strs(t["rules"], "expect.rules") if "rules" in t else None,
        _strs(t["shadow"], "expect.shadow") if "shadow" in t else None,
        unknown,
    )


def parse_cases(
    data: Mapping[str, object], path: str, make_phone: Callable[[str, str], PhoneFacts]
) -> list[RuleCase]:
    """Cases from a parsed TOML document; raises PolicyError naming every bad case."""
    raw_cases = data.get("case")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise PolicyError(
            [Diagnostic(path, 1, 1, Severity.ERROR, "expected one or more [[case]] tables")]
        )
    cases: list[RuleCase] = []
    errors: list[Diagnostic] = []
    for i, raw in enumerate(raw_cases):
        where = f"{path} case[{i}]"
        try:
            t = _table(raw, "a case")
            _check_keys(t, _CASE_KEYS, "case")
            name = t.get("name")
            if not isinstance(name, str) or not name:
                raise _CaseError("every case needs a name")
            where = f"{path} case[{i}] {name!r}"
            number = t.get("phone")
            region = t.get("default_region", "")
            if not isinstance(number, str) or not isinstance(region, str):
                raise _CaseError("phone (and default_region) must be strings")
            phone = make_phone(number, region)
            if "phone_facts" in t:
                phone = _phone_overrides(phone, t["phone_facts"])
            tenant = t.get("tenant", "")
            if not isinstance(tenant, str):
                raise _CaseError("tenant must be a string")
            if "expect" not in t:
                raise _CaseError("every case needs an [case.expect] table")
            cases.append(
                RuleCase(
                    name=name,
                    where=where,
                    facts=Facts(tenant, phone, _event(t.get("event", {}))),
                    values=MappingProxyType(_values(t.get("aggregates", {}))),
                    lists=MappingProxyType(_lists(t.get("lists", {}))),
                    expect=_expect(t["expect"]),
                )
            )
        except (_CaseError, ValueError) as err:
            errors.append(Diagnostic(path, 1, 1, Severity.ERROR, f"{where}: {err}"))
    if errors:
        raise PolicyError(errors)
    return cases


@dataclass(frozen=True, slots=True)
class _Overlay:
    """A list as loaded, except that the case's number is forced on (with labels) or off."""

    base: ListView | None
    e164: str
    forced: Mapping[str, str] | None
    size: int = field(default=0)

    def __contains__(self, e164: object) -> bool:
        if e164 == self.e164:
            return self.forced is not None
        return self.base is not None and e164 in self.base

    def labels(self, e164: str) -> Mapping[str, str] | None:
        if e164 == self.e164:
            return self.forced
        return None if self.base is None else self.base.labels(e164)

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else 0


def run_case(policy: CompiledPolicy, case: RuleCase, lists: Mapping[str, ListView]) -> CaseResult:
    """Evaluate one case and compare; failures read as ``what: expected X, got Y``."""
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
    values: dict[str, int | None] = dict.fromkeys(ids, 0)
    values.update(case.values)
    views: dict[str, ListView] = dict(lists)
    for name, labels in case.lists.items():
        views[name] = _Overlay(lists.get(name), case.facts.phone.e164, labels)
    facts = case.facts if case.facts.tenant else replace(case.facts, tenant=policy.tenant)
    decision = policy.evaluate(facts, values, views, explain=True)
    passed, failures = _compare(case.expect, decision)
    return CaseResult(case, passed, decision, failures)


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
