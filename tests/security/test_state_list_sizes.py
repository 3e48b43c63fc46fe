"""Lists kept in state (`list NAME from state`) cost the server what the operator expects,
whatever a tenant's reviewers send: a tenant's entries are bounded in bytes, not only in
number (100,000 entries of 16 long labels each were gigabytes in every replica's memory),
and a change decodes what changed, not the whole list (an add to a list of 100,000
entries held the event loop, every tenant's Evaluate with it, for about 2 s).

Regression tests for docs/security.md ("Who can write what": a tenant's reviewers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from support import Running, request, running_server

from server.api import decision_pb2 as pb
from server.api import policy_pb2 as ppb
from server.bundle.tenant_config import hash_token
from server.lists import writable
from server.lists.writable import MAX_TENANT_BYTES, StoredEntry

POLICY = """\
list manual_blocks from state
list manual_reviews from state

rule manual_block {
    when phone in manual_blocks
    then block
}
"""
TOKENS = {"acme": "acme-reviewers-token-1234", "beta": "beta-reviewers-token-1234"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    root = tmp_path / "rules"
    for tenant, token in TOKENS.items():
        (root / tenant).mkdir(parents=True)
        (root / tenant / "policy.rf").write_text(POLICY)
        (root / tenant / "tenant.toml").write_text(
            f'[auth]\nadmin_tokens_sha256 = ["{hash_token(token)}"]\n'
        )
    async with running_server(root) as s:
        yield s


def _entries(first: int, n: int, *, big: bool) -> list[ppb.NewListEntry]:
    # The longest note and labels a call admits, in characters UTF-8 takes 4 bytes for.
    labels = {f"k{j:063d}": "\U0001f600" * 256 for j in range(16)} if big else {}
    return [
        ppb.NewListEntry(
            number=f"+86138{first + i:08d}", note="\U0001f600" * 500 if big else "", labels=labels
        )
        for i in range(n)
    ]


async def _add(s: Running, tenant: str, name: str, entries: list[ppb.NewListEntry]) -> None:
    await s.policies.AddListEntries(
        ppb.AddListEntriesRequest(tenant=tenant, list=name, entries=entries),
        metadata=(("authorization", f"Bearer {TOKENS[tenant]}"),),
        timeout=60,
    )


async def test_a_tenants_lists_in_state_are_bounded_in_bytes(server: Running) -> None:
    s = server
    refused = None
    added = 0
    # Two lists: the bound is the tenant's, not each list's.
    for call in range(40):
        name = ("manual_blocks", "manual_reviews")[call % 2]
        try:
            await _add(s, "acme", name, _entries(added, 120, big=True))
        except grpc.aio.AioRpcError as exc:
            refused = exc
            break
        added += 120
    assert refused is not None, "a tenant's reviewers filled its lists without a bound"
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tenant 'acme''s lists kept in state would take" in (refused.details() or "")
    mirror = s.server.state_lists
    held = sum(snap.nbytes for key, snap in mirror.snapshots.items() if key[1] == "acme")
    assert 0 < held <= MAX_TENANT_BYTES
    # What was added still decides, and another tenant's lists are its own.
    got = await s.decisions.Evaluate(request("+8613800000000", tenant="acme"), timeout=10)
    assert got.action == pb.ACTION_BLOCK
    await _add(s, "beta", "manual_blocks", _entries(0, 10, big=True))


async def test_a_change_decodes_what_changed_not_the_whole_list(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = server
    for first in range(0, 5_000, 1_000):
        await _add(s, "acme", "manual_blocks", _entries(first, 1_000, big=False))
    decoded = 0
    real = StoredEntry.decode

    def counting(raw: bytes) -> StoredEntry:
        nonlocal decoded
        decoded += 1
        return real(raw)

    monkeypatch.setattr(writable.StoredEntry, "decode", staticmethod(counting))
    await _add(s, "acme", "manual_blocks", _entries(9_000, 1, big=False))
    await s.policies.GetListEntries(
        ppb.GetListEntriesRequest(tenant="acme", list="manual_blocks"),
        metadata=(("authorization", f"Bearer {TOKENS['acme']}"),),
        timeout=60,
    )
    assert decoded <= 2, f"{decoded} entries decoded for one added to a list of 5,000"
    got = await s.decisions.Evaluate(request(f"+86138{9_000:08d}", tenant="acme"), timeout=10)
    assert got.action == pb.ACTION_BLOCK
