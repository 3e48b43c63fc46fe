"""Lists the server writes (`list NAME from state`): added, removed and shown through
PolicyService, read by the policy like a file list, shared by replicas on one Redis,
expiring by themselves, authorised by the operator's or the tenant's admin token, audited,
and never holding a raw number in state."""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest_redis import RedisServer
from redis.asyncio import Redis
from support import RINGFENCE, Running, request, running_server

from server.api import decision_pb2 as pb
from server.api import policy_pb2 as ppb
from server.bundle.tenant_config import hash_token

POLICY = """\
list manual_blocks from state

rule manual_block {
    when phone in manual_blocks
    then block
    reason "on the manual block list: {manual_blocks.label("note")}"
}
"""
NUMBER = "+8613800138000"
OPERATOR = "operator-token-1234567890"
REVIEWERS = "acme-reviewers-token-1234"
HASH_KEY = b"writable-lists-test-key"


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def rules(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    for tenant, admin in (("acme", REVIEWERS), ("beta", "beta-reviewers-token-12345")):
        (root / tenant).mkdir(parents=True)
        (root / tenant / "policy.rf").write_text(POLICY)
        (root / tenant / "tenant.toml").write_text(
            f'[auth]\nadmin_tokens_sha256 = ["{hash_token(admin)}"]\n'
        )
    return root


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def entry(number: str = NUMBER, **kw: Any) -> ppb.NewListEntry:
    return ppb.NewListEntry(number=number, **kw)


async def add(s: Running, *entries: ppb.NewListEntry, token: str = REVIEWERS) -> Any:
    req = ppb.AddListEntriesRequest(tenant="acme", list="manual_blocks", entries=entries)
    return await s.policies.AddListEntries(req, metadata=auth(token), timeout=5)


async def decide(s: Running, number: str = NUMBER) -> pb.EvaluateResponse:
    return await s.decisions.Evaluate(request(number, tenant="acme"), timeout=5)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[Running, Clock]]:
    clock = Clock()
    async with running_server(
        rules(tmp_path), clock=clock, admin_token_hashes=frozenset({hash_token(OPERATOR)})
    ) as s:
        yield s, clock


async def test_added_numbers_decide_at_once_and_leave_when_removed(
    server: tuple[Running, Clock],
) -> None:
    s, _ = server
    assert (await decide(s)).action == pb.ACTION_ALLOW
    got = await add(s, entry(note="case 4411", labels={"queue": "fraud"}))
    assert (got.added, got.updated) == (1, 0)
    blocked = await decide(s)
    assert blocked.action == pb.ACTION_BLOCK
    assert blocked.matches[0].reason == "on the manual block list: case 4411"
    assert (await decide(s, "+8613800138001")).action == pb.ACTION_ALLOW
    again = await add(s, entry(note="case 4412"))
    assert (again.added, again.updated) == (0, 1)
    shown = await s.policies.GetListEntries(
        ppb.GetListEntriesRequest(tenant="acme", list="manual_blocks"), metadata=auth(REVIEWERS)
    )
    (e,) = shown.entries
    assert e.masked_number == "+8613****00"
    assert e.note == "case 4412"
    assert e.added_by == hash_token(REVIEWERS)[:12]
    status = await s.policies.GetPolicyStatus(
        ppb.GetPolicyStatusRequest(tenant="acme"), metadata=auth(OPERATOR)
    )
    (listed,) = status.tenants[0].state_lists
    assert (listed.list, listed.entries) == ("manual_blocks", 1)
    removed = await s.policies.RemoveListEntries(
        ppb.RemoveListEntriesRequest(tenant="acme", list="manual_blocks", numbers=["13800138000"]),
        metadata=auth(OPERATOR),
    )
    assert removed.removed == 1
    assert (await decide(s)).action == pb.ACTION_ALLOW
    # Another tenant's list of the same name is its own.
    beta = await s.decisions.Evaluate(request(NUMBER, tenant="beta"), timeout=5)
    assert beta.action == pb.ACTION_ALLOW


async def test_an_entry_with_a_ttl_expires_by_itself(server: tuple[Running, Clock]) -> None:
    s, clock = server
    await add(s, entry(ttl_seconds=7 * 86_400))
    assert (await decide(s)).action == pb.ACTION_BLOCK
    clock.now += 7 * 86_400 - 1
    assert (await decide(s)).action == pb.ACTION_BLOCK
    clock.now += 1
    assert (await decide(s)).action == pb.ACTION_ALLOW
    shown = await s.policies.GetListEntries(
        ppb.GetListEntriesRequest(tenant="acme", list="manual_blocks"), metadata=auth(OPERATOR)
    )
    assert list(shown.entries) == []


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("beta-reviewers-token-12345", grpc.StatusCode.PERMISSION_DENIED),
        ("not-a-token", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_only_the_operator_or_the_tenants_reviewers_may_write(
    server: tuple[Running, Clock], token: str | None, code: grpc.StatusCode
) -> None:
    s, _ = server
    req = ppb.AddListEntriesRequest(tenant="acme", list="manual_blocks", entries=[entry()])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.policies.AddListEntries(req, metadata=auth(token) if token else (), timeout=5)
    assert info.value.code() == code
    assert (await decide(s)).action == pb.ACTION_ALLOW


@pytest.mark.parametrize(
    ("req", "code", "details"),
    [
        (
            ppb.AddListEntriesRequest(
                tenant="acme", list="manual_blocks", entries=[entry("1701234567O")]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "entries[0].number",
        ),
        (
            ppb.AddListEntriesRequest(
                tenant="acme", list="manual_blocks", entries=[entry(ttl_seconds=-1)]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "entries[0].ttl_seconds",
        ),
        (
            ppb.AddListEntriesRequest(
                tenant="acme",
                list="manual_blocks",
                entries=[entry(labels={f"k{i}": "v" for i in range(17)})],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "entries[0].labels",
        ),
        (
            ppb.AddListEntriesRequest(tenant="acme", list="privacy", entries=[entry()]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "keeps no list 'privacy' in state (`list NAME from state` in its policy; it has:"
            " manual_blocks)",
        ),
        (
            ppb.AddListEntriesRequest(tenant="nope", list="manual_blocks", entries=[entry()]),
            grpc.StatusCode.NOT_FOUND,
            "unknown tenant",
        ),
    ],
)
async def test_bad_requests_say_why_and_change_nothing(
    server: tuple[Running, Clock],
    req: ppb.AddListEntriesRequest,
    code: grpc.StatusCode,
    details: str,
) -> None:
    s, _ = server
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.policies.AddListEntries(req, metadata=auth(OPERATOR), timeout=5)
    assert info.value.code() == code
    assert details in (info.value.details() or "")
    assert (await decide(s)).action == pb.ACTION_ALLOW


async def test_changes_are_audited_with_masked_numbers(
    server: tuple[Running, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    s, _ = server
    with caplog.at_level(logging.INFO, logger="ringfence.audit"):
        await add(s, entry(note="case 4411"))
    (record,) = [r for r in caplog.records if r.name == "ringfence.audit"]
    assert record.getMessage() == "list entries added"
    assert record.numbers == ["+8613****00"]  # type: ignore[attr-defined]
    assert record.tenant == "acme"
    assert record.by == hash_token(REVIEWERS)[:12]
    assert "13800138000" not in str(record.__dict__)


async def test_two_replicas_on_one_redis_share_the_list(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = Redis.from_url(redis_server.url)
    await client.flushall()
    root = rules(tmp_path)
    common: dict[str, Any] = {
        "state": redis_server.url,
        "hash_key": HASH_KEY,
        "state_timeout_ms": 2000,
    }
    async with running_server(root, **common) as a, running_server(root, **common) as b:
        await add(a, entry(note="shared"))
        assert (await decide(a)).action == pb.ACTION_BLOCK  # the replica that wrote it: at once
        async with asyncio.timeout(10):  # the other: within a poll of the list's version
            while (await decide(b)).action != pb.ACTION_BLOCK:  # noqa: ASYNC110 - server state
                await asyncio.sleep(0.1)
        await b.policies.RemoveListEntries(
            ppb.RemoveListEntriesRequest(tenant="acme", list="manual_blocks", numbers=[NUMBER]),
            metadata=auth(REVIEWERS),
        )
        async with asyncio.timeout(10):
            while (await decide(a)).action != pb.ACTION_ALLOW:  # noqa: ASYNC110 - server state
                await asyncio.sleep(0.1)
        # Redis holds the list, and no raw number anywhere in it.
        keys = [k async for k in client.scan_iter(match="rf:*statelist*")]
        assert keys
        for key in keys:
            dumped = await client.dump(key)
            assert dumped is not None
            assert b"13800138000" not in dumped
    await client.aclose()


async def test_the_cli_adds_shows_and_removes(
    server: tuple[Running, Clock], tmp_path: Path
) -> None:
    s, _ = server
    token = tmp_path / "token"
    token.write_text(REVIEWERS + "\n")
    base = ["--server", s.address, "--tenant", "acme", "--token-file", str(token)]

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [str(RINGFENCE), "list", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = await cli("add", *base, "manual_blocks", NUMBER, "--ttl", "7d", "--note", "case 9")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("manual_blocks: 1 added, 0 updated")
    assert (await decide(s)).action == pb.ACTION_BLOCK
    out = await cli("show", *base, "manual_blocks")
    assert "+8613****00" in out.stdout
    assert "case 9" in out.stdout
    assert "13800138000" not in out.stdout
    out = await cli("remove", *base, "manual_blocks", NUMBER)
    assert out.stdout.startswith("manual_blocks: 1 removed")
    out = await cli("add", *base[:4], "manual_blocks", NUMBER)  # no token
    assert out.returncode == 1
    assert "UNAUTHENTICATED" in out.stderr


def test_a_list_from_anything_but_state_or_a_file_is_an_error(tmp_path: Path) -> None:
    root = rules(tmp_path)
    (root / "acme" / "policy.rf").write_text(POLICY.replace("from state", "from stat"))
    out = subprocess.run(
        [str(RINGFENCE), "check", str(root), "--tenant", "acme"], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert (
        "acme/policy.rf:1:1: error: list 'manual_blocks' comes from a file"
        " (\"lists/manual_blocks.csv\") or from state, not 'stat'; did you mean 'state'?"
    ) in out.stdout


def _token(text: str) -> str:
    """A page token's encoding of ``text``: what a caller could forge."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def _page(s: Running, **kw: Any) -> Any:
    req = ppb.GetListEntriesRequest(tenant="acme", list="manual_blocks", **kw)
    return await s.policies.GetListEntries(req, metadata=auth(REVIEWERS), timeout=30)


async def test_entries_come_page_by_page_each_once(
    server: tuple[Running, Clock], tmp_path: Path
) -> None:
    s, clock = server
    numbers = [f"+86138{i:08d}" for i in range(2_300)]
    for start in range(0, len(numbers), 1000):
        await add(s, *(entry(n, note=f"n{n[-4:]}") for n in numbers[start : start + 1000]))
        clock.now += 1  # three additions, three instants; within one, the hash breaks ties
    first = await _page(s)
    assert (len(first.entries), first.total_size) == (500, 2_300)  # the default page
    seen = [e.note for e in first.entries]
    token = first.next_page_token
    assert "138" not in token  # positions name hashes, not numbers
    pages = 1
    while token:
        page = await _page(s, page_token=token, page_size=1000)
        seen += [e.note for e in page.entries]
        token = page.next_page_token
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(f"n{n[-4:]}" for n in numbers)
    # Oldest first: the first addition's entries fill the first page.
    assert {e.note for e in first.entries} <= {f"n{n[-4:]}" for n in numbers[:1000]}
    # The whole list through the CLI, which pages for its caller.
    tok = tmp_path / "token"
    tok.write_text(REVIEWERS + "\n")
    argv = [str(RINGFENCE), "list", "show", "--server", s.address, "--tenant", "acme"]
    argv += ["--token-file", str(tok), "manual_blocks"]
    out = await asyncio.to_thread(
        subprocess.run,
        argv,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("manual_blocks: 2300 entries")


async def test_a_page_of_long_entries_stays_within_a_grpc_message(
    server: tuple[Running, Clock],
) -> None:
    s, _ = server
    long = dict(note="字" * 500, labels={f"k{i:02d}" + "x" * 60: "值" * 256 for i in range(16)})
    for start in range(0, 1_000, 250):
        await add(s, *(entry(f"+86139{i:08d}", **long) for i in range(start, start + 250)))
    page = await _page(s, page_size=1000)
    assert 0 < len(page.entries) < 1000
    assert page.ByteSize() < 4 * 1024 * 1024
    assert page.next_page_token


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"page_size": -1}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"page_token": "not a token"}, "page_token"),
        ({"page_token": "WyJ4Il0"}, "page_token"),  # ["x"]: a token's shape, not its content
        ({"page_token": "A" * 600}, "page_token"),
        ({"page_token": _token("[" + "9" * 380 + ', "x"]')}, "page_token"),  # past a float
        ({"page_token": _token('[NaN, "x"]')}, "page_token"),
        ({"page_token": _token('[Infinity, "x"]')}, "page_token"),
    ],
)
async def test_a_bad_page_request_says_which_field(
    server: tuple[Running, Clock], kw: dict[str, Any], field: str
) -> None:
    s, _ = server
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _page(s, **kw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")
