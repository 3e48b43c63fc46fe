"""``--max-connection-age``: the server asks clients to reconnect (GOAWAY) after a while, so
a scaled-out Deployment's new pods receive existing callers; calls in flight finish."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from support import request, running_server

READY = grpc.ChannelConnectivity.READY


async def wait_leaves_ready(channel: grpc.aio.Channel, within: float) -> bool:
    """True when the connection stops being READY (the server sent GOAWAY) in time."""
    try:
        async with asyncio.timeout(within):
            await channel.wait_for_state_change(READY)
    except TimeoutError:
        return False
    return channel.get_state() != READY


async def test_connections_are_aged_out(rules_copy: Path) -> None:
    async with (
        running_server(rules_copy, max_connection_age_s=0.5, max_connection_age_grace_s=1.0) as s,
        grpc.aio.insecure_channel(s.address) as channel,
    ):
        await channel.channel_ready()
        assert channel.get_state() == READY
        assert await wait_leaves_ready(channel, within=20)
        # The client reconnects by itself: calls keep working.
        stub = type(s.decisions)(channel)
        resp = await stub.Evaluate(request("+8613800138000", dry_run=True), timeout=5)
        assert resp.request_id


async def test_without_an_age_connections_stay(rules_copy: Path) -> None:
    # The same wait as above, against a server without the setting: it must not fire.
    async with running_server(rules_copy) as s, grpc.aio.insecure_channel(s.address) as channel:
        await channel.channel_ready()
        assert not await wait_leaves_ready(channel, within=3)
