"""Numbers callers send in attributes are untrusted text: huge, signed, exponent, NaN and
infinity texts, digits of other scripts. None of them takes a request, a tenant or the
state down, none overflows a sum (memory, Redis, Redis Cluster), and a flood of distinct
attribute values (`per attribute "user_id"`) is bounded as numbers are.

Regression tests for docs/state.md §2 and §5 and docs/dsl.md "Numbers in attributes".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest_redis import RedisServer
from support import request, running_server

from dsl import compile_policy
from dsl.facts import EventFacts, Facts, PhoneFacts
from dsl.pipeline import decide_now
from dsl.runtime import number
from server.api import decision_pb2 as pb
from server.state import MemoryBackend

POLICY = """\
aggregate spent = sum(event.number("amount"), per number, over 1h)
aggregate largest = max(event.number("amount"), per number, over 1h)
aggregate mean = avg(event.number("amount"), per attribute "user_id", over 1h)

rule big { when spent > 1000 then review on_error review }
rule huge_one { when event.number("amount") > 100000 then block }
"""

HOSTILE = [
    "9" * 512,  # the longest value a request may carry
    "1" + "0" * 300 + ".5",
    "-" + "9" * 500,
    "0." + "5" * 510,
    "1e308",
    "1E5",
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "+5",
    " 5",
    "5 ",
    "0x10",
    "1_000",
    "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes, the language says no
    "１２",  # full-width digits
    "5.",
    ".5",
    "--5",
    "1000000000",  # 10**9: one past the largest accepted size
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_numbers_are_unknown(text: str) -> None:
    assert number({"amount": text}, "amount") is None


@pytest.mark.parametrize(
    ("text", "millionths"),
    [
        ("999999999.999999", 999_999_999_999_999),
        ("-999999999.9999994", -999_999_999_999_999),
        ("0.0000005", 0),
        ("0.0000015", 2),
        ("-0", 0),
        ("007", 7_000_000),
    ],
)
def test_the_edges_of_what_is_accepted(text: str, millionths: int) -> None:
    assert number({"amount": text}, "amount") == millionths


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules" / "shop"
    folder.mkdir(parents=True)
    (folder / "policy.rf").write_text(POLICY, encoding="utf-8")
    return tmp_path / "rules"


async def _hostile_traffic(rules: Path, state: str) -> None:
    async with running_server(rules, state=state) as srv:
        for text in HOSTILE:
            resp = await srv.decisions.Evaluate(
                request(
                    "+8613800138000",
                    tenant="shop",
                    event={"scene": "pay", "attributes": {"amount": text, "user_id": "u1"}},
                    explain=True,
                )
            )
            assert resp.action == pb.ACTION_ALLOW, text[:40]
            values = {a.id: (a.value if a.known else None) for a in resp.aggregates}
            # Nothing fed: the sum of nothing is 0, the largest and the mean unknown.
            assert values == {"spent": 0, "largest": None, "mean": None}, text[:40]
            assert not resp.degraded
        # Ten values at the largest size: the sum passes 2**53 millionths and reads
        # unknown (the rule's on_error reviews); nothing overflows, later requests work.
        resp = None
        for _ in range(10):
            resp = await srv.decisions.Evaluate(
                request(
                    "+8613800138000",
                    tenant="shop",
                    event={"attributes": {"amount": "999999999.999999", "user_id": "u1"}},
                    explain=True,
                )
            )
        assert resp is not None
        values = {a.id: (a.value if a.known else None) for a in resp.aggregates}
        assert values["spent"] is None
        assert values["largest"] == 999_999_999_999_999
        assert values["mean"] is None  # its sum is unknown, so is the mean (§5)
        assert resp.action == pb.ACTION_BLOCK
        assert not resp.degraded
        ok = await srv.decisions.Evaluate(
            request("+8613900139000", tenant="shop", event={"attributes": {"amount": "5"}})
        )
        assert ok.action == pb.ACTION_ALLOW


async def test_hostile_numbers_over_grpc_on_memory(rules: Path) -> None:
    await _hostile_traffic(rules, "memory://")


@pytest.mark.redis
async def test_hostile_numbers_over_grpc_on_redis(rules: Path, redis_server: RedisServer) -> None:
    await _hostile_traffic(rules, redis_server.url)


def test_many_distinct_attribute_values_are_bounded_as_keys_are() -> None:
    """A caller inventing a user id per request fills the tenant's share of keys and then
    evicts its own oldest, never more."""
    policy = compile_policy(
        {"t/policy.rf": 'aggregate per_user = count(per attribute "user_id", over 1d)\n'
         "rule r { when per_user > 3 then review }\n"},
        tenant="t",
    )  # fmt: skip
    state = MemoryBackend(hash_key=b"k" * 32, max_keys=1_000)
    phone = PhoneFacts(e164="+8613800138000", valid=True, region="CN")
    for i in range(5_000):
        event = EventFacts(occurred_at=1_893_456_000.0 + i, attributes={"user_id": f"u{i}"})
        decide_now(policy, {}, Facts(tenant="t", phone=phone, event=event), state, record=True)
    assert len(state) == 1_000
    assert state.stats.evictions == 4_000
    # The keys hold hashes of the ids, never the ids.
    assert not any("u4999" in k for k in state.keys(tenant="t"))
