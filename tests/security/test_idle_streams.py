"""Streams cannot pile up: 4,000 ``EvaluateStream`` calls with no token and no message
once added ~80 MB to the server, because the token was only checked per item.

Now a stream is authenticated when it opens (metadata), calls in flight are capped
(``maximum_concurrent_rpcs``), one connection holds a bounded number of streams
(HTTP/2 MAX_CONCURRENT_STREAMS), and a stream without a message for the idle timeout is
ended. ``bench/idle_streams.py`` measures the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from support import Running, request, running_server

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc
from server.bundle.tenant_config import hash_token

TOKEN = "stream-token-1"
OTHER = "stream-token-2"
WAIT_S = 30.0  # a cap for states we wait for, never a threshold


def protect(rules: Path, tenant: str, token: str) -> None:
    (rules / tenant / "tenant.toml").write_text(
        f'[auth]\ntokens_sha256 = ["{hash_token(token)}"]\n'
    )


@pytest.fixture
def protected(rules_copy: Path) -> Path:
    """demo and a copy, each with its own token: no tenant is open."""
    import shutil

    shutil.copytree(rules_copy / "demo", rules_copy / "other")
    protect(rules_copy, "demo", TOKEN)
    protect(rules_copy, "other", OTHER)
    return rules_copy


QUIET = asyncio.Event()  # never set: what the silent clients wait for


async def silent() -> AsyncIterator[pb.EvaluateRequest]:
    """A client that opens a stream and never sends (until the test ends)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_S):
            await QUIET.wait()
    return
    yield  # an async generator that yields nothing


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["no-token", "bad-token"])
async def test_a_stream_no_tenant_would_accept_ends_before_its_first_message(
    protected: Path, token: str | None
) -> None:
    async with running_server(protected) as s:
        call = s.decisions.EvaluateStream(
            silent(), metadata=auth(token) if token else None, timeout=WAIT_S
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_items_are_still_authorised_per_tenant(protected: Path) -> None:
    async with running_server(protected) as s:

        async def items() -> AsyncIterator[pb.EvaluateRequest]:
            yield request("+8613800138000", tenant="demo")
            yield request("+8613800138000", tenant="other")

        got = [r async for r in s.decisions.EvaluateStream(items(), metadata=auth(TOKEN))]
        assert got[0].action != pb.ACTION_UNSPECIFIED
        assert got[1].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]


async def test_an_idle_stream_is_ended(protected: Path) -> None:
    async with running_server(protected, stream_idle_timeout_s=0.5) as s:

        async def one_then_silence() -> AsyncIterator[pb.EvaluateRequest]:
            yield request("+8613800138000", tenant="demo")
            async for item in silent():
                yield item  # pragma: no cover - silent() yields nothing

        call = s.decisions.EvaluateStream(one_then_silence(), metadata=auth(TOKEN))
        answers: list[pb.EvaluateResponse] = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(collect(call, answers), WAIT_S)
        # It served while messages came, then ended.
        assert [a.HasField("error") for a in answers] == [False]
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no message for 0.5 s" in (info.value.details() or "")


async def collect(
    call: AsyncIterator[pb.EvaluateResponse], into: list[pb.EvaluateResponse]
) -> None:
    async for response in call:
        into.append(response)


async def evaluate_or_refused(s: Running) -> pb.EvaluateResponse | None:
    """An answer, or None when the server refused the call for want of a free slot."""
    try:
        return await s.decisions.Evaluate(request("+8613800138000"), timeout=WAIT_S)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return None


async def streams_open(s: Running, n: int) -> None:
    """Wait until the server runs ``n`` streams (its gauge)."""
    async with asyncio.timeout(WAIT_S):
        while s.server.decisions.open_streams != n:  # noqa: ASYNC110 - in the server
            await asyncio.sleep(0.01)


async def test_calls_in_flight_are_capped(rules_copy: Path) -> None:
    # demo is open here: streams need no token, so only the cap stops them.
    async with running_server(rules_copy, max_concurrent_rpcs=4, stream_idle_timeout_s=0) as s:
        held = [s.decisions.EvaluateStream(silent()) for _ in range(4)]
        await streams_open(s, 4)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.decisions.Evaluate(request("+8613800138000"), timeout=WAIT_S)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        held.pop().cancel()
        # Once a slot is free (gRPC frees it just after the call ends), calls pass again.
        async with asyncio.timeout(WAIT_S):
            while (answer := await evaluate_or_refused(s)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert answer.action != pb.ACTION_UNSPECIFIED
        for call in held:
            call.cancel()


async def test_one_connection_holds_a_bounded_number_of_streams(rules_copy: Path) -> None:
    async with running_server(
        rules_copy, max_streams_per_connection=3, stream_idle_timeout_s=0
    ) as s:
        held = [s.decisions.EvaluateStream(silent()) for _ in range(3)]
        await streams_open(s, 3)
        # The fourth call on that connection waits for a free stream: it can only run
        # out of time. Another connection is served.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.decisions.Evaluate(request("+8613800138000"), timeout=1)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Channels to one address share a connection unless told otherwise.
        fresh = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(s.address, options=fresh) as channel:
            stub = pb_grpc.DecisionServiceStub(channel)
            answer = await stub.Evaluate(request("+8613800138000"), timeout=WAIT_S)
            assert answer.action != pb.ACTION_UNSPECIFIED
        for call in held:
            call.cancel()
