"""``ringfence eval``: decide one number offline and explain why."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from server.cli.common import registry

# Aggregate values are counts: whole numbers from 0 to the policy language's int64 maximum.
_AGG_VALUE = re.compile(r"[0-9]{1,19}")
_INT64_MAX = 2**63 - 1


def parse_aggs(items: list[str], known: Sequence[str], tenant: str) -> dict[str, int | None]:
    """``--agg NAME=VALUE`` options: VALUE is a count or ``unknown``; NAME must be one of
    the policy's aggregates. Raises ValueError with a message for people."""
    out: dict[str, int | None] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name:
            raise ValueError(f"--agg {item!r}: expected NAME=VALUE")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listed = ", ".join(known) or "none"
            raise ValueError(
                f"--agg {name}: tenant {tenant!r} has no aggregate {name!r}{hint} "
                f"(aggregates: {listed})"
            )
        if text in ("unknown", ""):
            out[name] = None
        elif _AGG_VALUE.fullmatch(text) and int(text) <= _INT64_MAX:
            out[name] = int(text)
        else:
            raise ValueError(
                f"--agg {name}={text}: a value is a whole number from 0 to {_INT64_MAX}, "
                "or 'unknown'"
            )
    return out


def run_eval(ns: argparse.Namespace) -> int:
    import time

    from dsl.facts import EventFacts, Facts
    from dsl.testing import explain_text
    from server.phone import PhoneParseError

    reg = registry(Path(ns.rules))
    outcome = reg.load_sync([ns.tenant])[0]
    if not outcome.ok:
        print(outcome.error, file=sys.stderr)
        return 1
    bundle = reg.get(ns.tenant)
    assert bundle is not None
    try:
        phone = reg.parser.parse(ns.phone, ns.region or bundle.config.default_region)
    except PhoneParseError as exc:
        print(f"ringfence eval: --phone: {exc.reason}", file=sys.stderr)
        return 2
    attrs: dict[str, str] = {}
    for kv in ns.attr:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            print(f"ringfence eval: --attr {kv!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        attrs[key] = value
    try:
        given = parse_aggs(ns.agg, bundle.policy.aggregate_ids, ns.tenant)
    except ValueError as exc:
        print(f"ringfence eval: {exc}", file=sys.stderr)
        return 2
    event = EventFacts(
        scene=ns.scene,
        app_id=ns.app_id,
        ip=ns.ip,
        device_id=ns.device_id,
        occurred_at=time.time(),
        attributes=attrs,
    )
    facts = Facts(tenant=ns.tenant, phone=phone, event=event)
    values: dict[str, int | None] = dict(given)
    for ref in bundle.policy.plan(facts, bundle.lists):
        values.setdefault(ref.id, 1 if ref.feeds else 0)
    decision = bundle.policy.evaluate(facts, values, bundle.lists, explain=True)
    print(f"policy {ns.tenant} version {bundle.version}")
    print(
        f"phone  {phone.e164 if ns.show_number else '(hidden)'} valid={phone.valid} "
        f"region={phone.region} type={phone.number_type} carrier={phone.carrier!r} "
        f"segment={phone.segment_kind or '-'}"
    )
    print("aggregates " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
    print(explain_text(decision))
    return 0
