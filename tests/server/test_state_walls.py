"""Issue 11's flood, end to end: one open tenant's flood of numbers through a running
server must not evict another tenant's state in the memory backend, so a number the
protected tenant blocked stays blocked."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from support import request, running_server

from server.api import decision_pb2 as pb
from server.state import MemoryBackend

MAX_KEYS = 1_000


def event(scene: str, when: float) -> pb.Event:
    ts = Timestamp()
    ts.FromNanoseconds(int(when * 1e9))
    return pb.Event(scene=scene, app_id="shop", occurred_at=ts)


@pytest.fixture
def rules(rules_copy: Path) -> Path:
    for tenant in ("protected", "open"):
        shutil.copytree(rules_copy / "demo", rules_copy / tenant)
    return rules_copy


async def test_a_flood_in_one_tenant_leaves_anothers_block_in_place(rules: Path) -> None:
    backend = MemoryBackend(hash_key=b"walls", max_keys=MAX_KEYS)
    now = time.time() - 600
    async with running_server(rules, backend=backend) as s:
        stub = s.decisions
        # 20 consecutive numbers registering today: the 20th is blocked as a batch.
        for i in range(20):
            last = await stub.Evaluate(
                request(f"+86170000{i:05d}", tenant="protected", event=event("register", now + i)),
                timeout=5,
            )
        assert last.action == pb.ACTION_BLOCK
        assert "consecutive_numbers_block" in [m.rule for m in last.matches]
        # The open tenant sends SMS codes to 3,000 different numbers: 6,000 keys into a
        # store of 1,000.
        for batch in range(3):
            items = [
                request(f"+86139{batch}{i:07d}", tenant="open", event=event("sms_code", now + 30))
                for i in range(1_000)
            ]
            await stub.EvaluateBatch(pb.EvaluateBatchRequest(requests=items), timeout=30)
        assert backend.stats.evictions > 4_000
        # The next number of the run is still blocked: its run key survived the flood.
        after = await stub.Evaluate(
            request(f"+86170000{20:05d}", tenant="protected", event=event("register", now + 60)),
            timeout=5,
        )
        assert after.action == pb.ACTION_BLOCK
        assert "21 consecutive numbers" in " ".join(m.reason for m in after.matches)
