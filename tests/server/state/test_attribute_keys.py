"""`per attribute "NAME"` through the decision pipeline and the memory state: counted per
value, alone and with another key, in age(), and never fed by an event without it."""

from __future__ import annotations

from dsl import compile_policy
from dsl.facts import EventFacts, Facts, PhoneFacts
from dsl.pipeline import decide_now
from server.state import MemoryBackend

POLICY = """
aggregate per_user = count(per attribute "user_id", over 1h)
aggregate per_user_number = count(per (number, attribute "user_id"), over 1h)
rule r { when per_user > 100 or per_user_number > 100 or age(per attribute "user_id") > 1h
    then review }
"""
T0 = 1_893_456_000.0


def test_counted_per_attribute_value() -> None:
    policy = compile_policy({"t/policy.rf": POLICY}, tenant="t")
    state = MemoryBackend(hash_key=b"k" * 32)
    seen = []
    for i, (number, user) in enumerate(
        [("+8613800138000", "u1"), ("+8613900139000", "u1"), ("+8613900139000", "u2"),
         ("+8613900139000", ""), ("+8613800138000", "u1")]
    ):  # fmt: skip
        attrs = {"user_id": user} if user else {}
        facts = Facts(
            tenant="t",
            phone=PhoneFacts(e164=number, valid=True, region="CN"),
            event=EventFacts(occurred_at=T0 + i * 600, attributes=attrs),
        )
        decided = decide_now(policy, {}, facts, state, record=True, explain=True)
        seen.append(dict(decided.values))
    assert [v["per_user"] for v in seen] == [1, 2, 1, 0, 3]
    assert [v["per_user_number"] for v in seen] == [1, 1, 1, 0, 2]
    # On the receipt clock (the event time offline): u1 first seen at T0.
    assert [v['age(per attribute "user_id")'] for v in seen] == [0, 600, 0, 0, 2400]
