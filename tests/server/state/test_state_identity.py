"""Storage identity is the whole declaration: two aggregates that differ in any field of
their definition never share storage, and two that mean the same thing do.

The table below has one row per field of ``dsl.aggregates.identity``; a field added to
``AggregateSpec`` or ``Window`` without a row here fails ``test_every_identity_field_has_a_row``,
so a new field cannot silently stop counting apart (docs/state.md §3).
"""

from __future__ import annotations

import dataclasses

import pytest

from dsl.aggregates import AggregateSpec, identity
from dsl.compiler import compile_policy
from dsl.facts import EventFacts, Facts
from dsl.policy import CompiledPolicy
from server.phone import PhoneParser
from server.state.keys import family_of

from .conftest import Backend

T0 = 1_767_225_600.0
PARSER = PhoneParser()

# field -> (declaration A, declaration B, settings): the two differ only in that field.
ROWS: dict[str, tuple[str, str, str]] = {
    "kind": ("count(per segment, over 1h)", "run(per segment, over 1h)", ""),
    "key": ("count(per number, over 1h)", "count(per device, over 1h)", ""),
    "key_arg": ("count(per prefix 5, over 1h)", "count(per prefix 6, over 1h)", ""),
    "more_keys": ("count(per (number, app), over 1h)", "count(per (number, device), over 1h)", ""),
    "field": (
        "distinct(event.app_id, per number, over 1h)",
        "distinct(event.ip, per number, over 1h)",
        "",
    ),
    "filter": (
        'count(per number, over 1h) where event.scene == "sms_code"',
        'count(per number, over 1h) where event.scene == "login"',
        "",
    ),
    "window.size_s": ("count(per number, over 1h)", "count(per number, over 2h)", ""),
    "window.calendar_day": ("count(per number, over 1d)", "count(per number, over today)", ""),
    "window.timezone": (
        "count(per number, over today)",
        "count(per number, over today)",
        'settings {\n    timezone = "Asia/Shanghai"\n}\n',
    ),
}

ALSO = {"window.calendar_day": ("window.timezone",)}


def _policy(declaration: str, settings: str = "") -> CompiledPolicy:
    source = (
        f"{settings}aggregate x = {declaration}\nrule r {{\n    when x >= 0\n    then review\n}}\n"
    )
    return compile_policy({"t/p.rf": source}, tenant="t")


def test_every_identity_field_has_a_row() -> None:
    spec = _policy("count(per number, over 1h)").aggregates[0]
    assert [name for name, _ in identity(spec)] == list(ROWS)


def test_excluded_fields_are_named_and_exist() -> None:
    """The exclusion lists name real fields: a rename cannot turn one into an inclusion."""
    assert {f.name for f in dataclasses.fields(AggregateSpec)} >= AggregateSpec.IDENTITY_EXCLUDE
    window = _policy("count(per number, over 1h)").aggregates[0].window
    assert {f.name for f in dataclasses.fields(window)} >= window.IDENTITY_EXCLUDE


@pytest.mark.parametrize("field", list(ROWS))
def test_one_field_apart_is_another_key(field: str) -> None:
    a_decl, b_decl, b_settings = ROWS[field]
    a = _policy(a_decl).aggregates[0]
    b = _policy(b_decl, b_settings).aggregates[0]
    differing = [n for (n, va), (_, vb) in zip(identity(a), identity(b), strict=True) if va != vb]
    # A sliding window has no time zone, so "1d" and "today" also differ in it.
    assert differing == [field, *ALSO.get(field, ())]
    assert family_of("t", a).tail != family_of("t", b).tail


def test_names_and_offsets_are_not_identity() -> None:
    """Renaming keeps the count; a window read 1h back reads the same buckets."""
    plain = _policy("count(per number, over 1h)").aggregates[0]
    renamed = dataclasses.replace(plain, id="other")
    assert family_of("t", plain) == family_of("t", renamed)
    both = compile_policy(
        {
            "t/p.rf": "aggregate x = count(per number, over 1h)\n"
            "rule r {\n    when x > x.ago(1h)\n    then review\n}\n"
        },
        tenant="t",
    ).aggregates
    assert [s.id for s in both] == ["x", "x@1h"]
    assert family_of("t", both[0]) == family_of("t", both[1])


def test_same_meaning_written_differently_shares_and_is_reported() -> None:
    source = (
        'const SMS = "sms_code"\n'
        "aggregate a = count(per number, over 1h) where event.scene == SMS\n"
        'aggregate b = count(per number, over 1h) where "sms_code" == event.scene\n'
        "rule r {\n    when a > 0 and b > 0\n    then review\n}\n"
    )
    policy = compile_policy({"t/p.rf": source}, tenant="t")
    a, b = policy.aggregates
    assert family_of("t", a) == family_of("t", b)
    assert [w.message for w in policy.warnings] == [
        "aggregate 'b' counts the same events as 'a': the two share one count"
    ]


def _facts(policy: CompiledPolicy, scene: str, t: float) -> Facts:
    phone = PARSER.parse("+8617012345678", "CN")
    event = EventFacts(scene=scene, app_id="shop", ip="1.2.3.4", device_id="d1", occurred_at=t)
    return Facts(tenant="t", phone=phone, event=event)


@pytest.mark.parametrize("field", list(ROWS))
async def test_one_field_apart_never_shares_state(backend: Backend, field: str) -> None:
    """Through compile -> plan -> the backend: three events recorded through A leave B's
    value where B's own event puts it (for the filter row: three SMS codes, then a login)."""
    a_decl, b_decl, b_settings = ROWS[field]
    a, b = _policy(a_decl), _policy(b_decl, b_settings)
    for i in range(3):
        refs = a.plan(_facts(a, "sms_code", T0 + i), {})
        await backend.apply("t", refs, T0 + i, record=True)
    scene = "login" if field == "filter" else "sms_code"
    refs = b.plan(_facts(b, scene, T0 + 10), {})
    values = await backend.apply("t", refs, T0 + 10, record=True)
    assert values["x"] == 1, f"{field}: B read A's events"
