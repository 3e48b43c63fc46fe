"""Idempotent Evaluate: a retried request_id records nothing new and answers the first
decision, marked ``replayed`` — through a real gRPC client retrying by its service config,
on the memory backend, on Redis, and across two server replicas sharing one Redis."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest_redis import RedisServer
from redis.asyncio import Redis
from support import request, running_server

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc

HASH_KEY = b"idempotency-test-key"
NUMBER = "+8613800138000"
POLICY = """
aggregate codes = count(per number, over 1h)
aggregate apps = distinct(event.app_id, per number, over 1h)

rule counted {
    when codes >= 1
    then allow
    reason "{codes} codes for {apps} apps at {event.occurred_at}"
}

rule too_many {
    when codes >= 3
    then block
    reason "{codes} codes"
}
"""
RETRY_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "ringfence.v1.DecisionService"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


class LoseFirstAnswer(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Runs the real handler, then fails the first attempt of each request id (dry runs
    aside) with UNAVAILABLE: the decision was made and recorded, and its answer lost on the
    way back, which is what makes a client retry."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.replayed: list[bool] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.endswith("/Evaluate"):
            return handler
        inner = handler.unary_unary

        async def lose_first(req: pb.EvaluateRequest, context: Any) -> pb.EvaluateResponse:
            resp: pb.EvaluateResponse = await inner(req, context)
            if not req.request_id or req.dry_run:
                return resp
            self.attempts[req.request_id] += 1
            self.replayed.append(resp.replayed)
            if self.attempts[req.request_id] == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "answer lost on the way")
            return resp

        return grpc.unary_unary_rpc_method_handler(
            lose_first,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@pytest.fixture
def rules(rules_copy: Path) -> Path:
    (rules_copy / "retry").mkdir()
    (rules_copy / "retry" / "policy.rf").write_text(POLICY)
    return rules_copy


async def fresh_redis(url: str) -> str:
    client = Redis.from_url(url)
    await client.flushall()
    await client.aclose()
    return url


def retrying_channel(target: str, **options: Any) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.enable_retries", 1),
            ("grpc.service_config", RETRY_CONFIG),
            *options.items(),
        ],
    )


def code(request_id: str, number: str = NUMBER, app: str = "shop", **kw: Any) -> pb.EvaluateRequest:
    event = {"scene": "sms_code", "app_id": app}
    return request(number, tenant="retry", request_id=request_id, event=event, **kw)


async def stored_codes(stub: pb_grpc.DecisionServiceStub, number: str = NUMBER) -> int:
    """Events recorded for ``number``: a dry run counts them plus itself."""
    resp = await stub.Evaluate(code("", number, dry_run=True), timeout=5)
    return int(resp.matches[-1].reason.split()[0]) - 1


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest, redis_server: RedisServer) -> dict[str, Any]:
    if request.param == "memory":
        return {}
    url = await fresh_redis(redis_server.url)
    return {"state": url, "hash_key": HASH_KEY, "state_timeout_ms": 2000}


async def test_a_client_retrying_by_service_config_counts_once(
    rules: Path, state: dict[str, Any]
) -> None:
    lose = LoseFirstAnswer()
    async with running_server(rules, interceptors=[lose], **state) as s:
        async with retrying_channel(s.address) as channel:
            stub = pb_grpc.DecisionServiceStub(channel)
            first = await stub.Evaluate(code("req-a"), timeout=10)
            second = await stub.Evaluate(code("req-b"), timeout=10)
        assert lose.attempts == {"req-a": 2, "req-b": 2}  # the client did retry
        assert lose.replayed == [False, True, False, True]
        assert first.replayed
        assert second.replayed
        assert first.matches[0].reason.startswith("1 codes for 1 apps at ")
        assert second.matches[0].reason.startswith("2 codes for 1 apps at ")
        assert await stored_codes(s.decisions) == 2  # four attempts, two events
        # Asked again later, the first id answers exactly what it answered first.
        again = await s.decisions.Evaluate(code("req-a"), timeout=5)
        assert again.replayed
        assert again.action == first.action
        assert list(again.matches) == list(first.matches)
        assert again.request_id == "req-a"
        assert await stored_codes(s.decisions) == 2


async def test_without_the_window_every_attempt_counts(rules: Path) -> None:
    """The control: idempotency off, the same retries count twice each."""
    lose = LoseFirstAnswer()
    async with running_server(rules, interceptors=[lose], idempotency_window_s=0) as s:
        async with retrying_channel(s.address) as channel:
            resp = await pb_grpc.DecisionServiceStub(channel).Evaluate(code("req-a"), timeout=10)
        assert not resp.replayed
        assert await stored_codes(s.decisions) == 2


async def test_a_replay_answers_the_first_decision_even_after_more_events(
    rules: Path, state: dict[str, Any]
) -> None:
    async with running_server(rules, **state) as s:
        stub = s.decisions
        first = await stub.Evaluate(code("r1"), timeout=5)
        for i in range(3):
            await stub.Evaluate(code(f"other-{i}"), timeout=5)
        replay = await stub.Evaluate(code("r1"), timeout=5)
        assert (first.replayed, replay.replayed) == (False, True)
        assert replay.action == first.action == pb.ACTION_ALLOW
        assert list(replay.matches) == list(first.matches)
        assert await stored_codes(stub) == 4


async def test_an_id_reused_for_another_request_is_not_a_retry(
    rules: Path, state: dict[str, Any]
) -> None:
    async with running_server(rules, **state) as s:
        stub = s.decisions
        await stub.Evaluate(code("same"), timeout=5)
        other_app = await stub.Evaluate(code("same", app="ride"), timeout=5)
        other_number = await stub.Evaluate(code("same", number="+8613900139000"), timeout=5)
        assert not other_app.replayed
        assert not other_number.replayed
        assert other_app.matches[0].reason.startswith("2 codes for 2 apps")
        assert await stored_codes(stub) == 2
        assert await stored_codes(stub, "+8613900139000") == 1
        assert (await stub.Evaluate(code("same"), timeout=5)).replayed


async def test_fields_that_join_alike_are_still_two_requests(
    rules: Path, state: dict[str, Any]
) -> None:
    """Fingerprint fields are length-prefixed: scene "x\\0y" with app "z" and scene "x" with
    app "y\\0z" join to the same bytes with a separator, but are two requests."""
    async with running_server(rules, **state) as s:
        stub = s.decisions
        first = request(
            NUMBER, tenant="retry", request_id="rid", event={"scene": "x\0y", "app_id": "z"}
        )
        second = request(
            NUMBER, tenant="retry", request_id="rid", event={"scene": "x", "app_id": "y\0z"}
        )
        await stub.Evaluate(first, timeout=5)
        again = await stub.Evaluate(second, timeout=5)
        assert not again.replayed
        assert (await stub.Evaluate(first, timeout=5)).replayed


def test_fingerprints_name_and_measure_every_event_field() -> None:
    from dsl.facts import EventFacts, Facts, PhoneFacts
    from server.state.backend import fingerprint

    phone = PhoneFacts("+8613800138000", True)

    def fp(stamp: float | None = None, **event: Any) -> str:
        return fingerprint(Facts("t", phone, EventFacts(**event)), stamp=stamp, key=b"k")

    assert fp(scene="x\0y", app_id="z") != fp(scene="x", app_id="y\0z")
    assert fp(attributes={"a": "b=c"}) != fp(attributes={"a=b": "c"})
    assert fp(device_id="d") != fp(ip="d")  # the same text in another field
    assert fp(occurred_at=1.0) == fp(occurred_at=2.0)  # an unset time is each attempt's own
    assert fp(1.0, occurred_at=5.0) == fp(1.0, occurred_at=6.0)  # as sent, not as decided
    assert fp(1.0) != fp(2.0)
    assert fp(scene="s") == fp(scene="s")


async def test_dry_runs_and_requests_without_an_id_are_never_replays(
    rules: Path, state: dict[str, Any]
) -> None:
    async with running_server(rules, **state) as s:
        stub = s.decisions
        dry = await stub.Evaluate(code("x", dry_run=True), timeout=5)
        real = await stub.Evaluate(code("x"), timeout=5)
        assert not dry.replayed
        assert not real.replayed
        for _ in range(2):
            assert not (await stub.Evaluate(code(""), timeout=5)).replayed
        assert await stored_codes(stub) == 3


async def test_batch_and_stream_items_are_idempotent(rules: Path, state: dict[str, Any]) -> None:
    async with running_server(rules, **state) as s:
        stub = s.decisions
        items = [code(f"b{i}", number=f"+861380013{i:04d}") for i in range(5)]
        first = await stub.EvaluateBatch(pb.EvaluateBatchRequest(requests=items), timeout=5)
        again = await stub.EvaluateBatch(pb.EvaluateBatchRequest(requests=items), timeout=5)
        assert [r.response.replayed for r in first.results] == [False] * 5
        assert [r.response.replayed for r in again.results] == [True] * 5
        assert [r.response.matches[0].reason for r in again.results] == [
            r.response.matches[0].reason for r in first.results
        ]

        async def items_again() -> AsyncIterator[pb.EvaluateRequest]:
            for item in items:
                yield item

        streamed = [r async for r in stub.EvaluateStream(items_again(), timeout=5)]
        assert [r.replayed for r in streamed] == [True] * 5
        for i in range(5):
            assert await stored_codes(stub, f"+861380013{i:04d}") == 1


async def test_two_replicas_on_one_redis_see_a_retry_as_one(
    rules: Path, redis_server: RedisServer
) -> None:
    """A retry that lands on another replica (a load balancer's next pick) is still a
    replay: the claim lives in Redis, in the same script call as the event it records."""
    url = await fresh_redis(redis_server.url)
    shared = {"state": url, "hash_key": HASH_KEY, "state_timeout_ms": 2000}
    lose_a, lose_b = LoseFirstAnswer(), LoseFirstAnswer()
    async with (
        running_server(rules, interceptors=[lose_a], **shared) as a,
        running_server(rules, interceptors=[lose_b], **shared) as b,
    ):
        # Deterministic: replica A records and loses its answer, the retry goes to B.
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await a.decisions.Evaluate(code("cross-1"), timeout=5)
        assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
        lose_b.attempts["cross-1"] = 1  # B answers this id's first attempt it sees
        on_b = await b.decisions.Evaluate(code("cross-1"), timeout=5)
        assert on_b.replayed
        assert on_b.matches[0].reason.startswith("1 codes for 1 apps")
        assert await stored_codes(b.decisions) == 1

        # A real retrying client that knows both replicas, round robin between them:
        # every first attempt is lost, whichever replica it reached.
        target = f"ipv4:{a.address},{b.address}"
        lb = json.loads(RETRY_CONFIG) | {"loadBalancingConfig": [{"round_robin": {}}]}
        async with grpc.aio.insecure_channel(
            target,
            options=[("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(lb))],
        ) as channel:
            stub = pb_grpc.DecisionServiceStub(channel)
            answers = [await stub.Evaluate(code(f"rr-{i}"), timeout=10) for i in range(6)]
        assert all(r.replayed for r in answers)
        # Each id's first attempt made the only recording (on whichever replica took it).
        assert await stored_codes(a.decisions) == 7
        attempts = lose_a.attempts + lose_b.attempts
        assert all(attempts[f"rr-{i}"] >= 2 for i in range(6))
        assert sum(not r for r in lose_a.replayed + lose_b.replayed) == 7
