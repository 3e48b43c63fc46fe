"""``ringfence eval``: decide one number offline and explain why."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.cli.common import registry


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
    attrs = dict(kv.split("=", 1) for kv in ns.attr)
    event = EventFacts(
        scene=ns.scene,
        app_id=ns.app_id,
        ip=ns.ip,
        device_id=ns.device_id,
        occurred_at=time.time(),
        attributes=attrs,
    )
    facts = Facts(tenant=ns.tenant, phone=phone, event=event)
    values: dict[str, int | None] = {}
    for kv in ns.agg:
        key, _, value = kv.partition("=")
        values[key] = None if value in ("unknown", "") else int(value)
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
