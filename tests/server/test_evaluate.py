"""Evaluate over real gRPC: the status-code table, batch and stream behaviour."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from support import Running, request, running_server

from server.api import decision_pb2 as pb
from server.bundle.tenant_config import hash_token

SECURE_TOKEN = "secure-token-123"
OTHER_TOKEN = "other-token-456"


def add_tenant(rules: Path, name: str, toml: str) -> None:
    shutil.copytree(rules / "demo", rules / name)
    (rules / name / "tenant.toml").write_text(toml)


@pytest.fixture
async def multi(rules_copy: Path) -> AsyncIterator[Running]:
    add_tenant(rules_copy, "secure", f'[auth]\ntokens_sha256 = ["{hash_token(SECURE_TOKEN)}"]\n')
    add_tenant(rules_copy, "other", f'[auth]\ntokens_sha256 = ["{hash_token(OTHER_TOKEN)}"]\n')
    async with running_server(rules_copy) as running:
        yield running


def bad_request_fields(err: grpc.aio.AioRpcError) -> list[str]:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            detail = error_details_pb2.BadRequest()
            for any_ in status.details:
                if any_.Unpack(detail):
                    return [v.field for v in detail.field_violations]
    return []


STATUS_TABLE = [
    ("ok", request("+86 138 0013 8000"), None, grpc.StatusCode.OK, None),
    ("invalid but parsed is evaluated", request("+86 123"), None, grpc.StatusCode.OK, None),
    (
        "missing tenant",
        request("+8613800138000", tenant=""),
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "tenant",
    ),
    ("missing number", request(""), None, grpc.StatusCode.INVALID_ARGUMENT, "phone_number"),
    (
        "not a number",
        request("hello there"),
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "phone_number",
    ),
    (
        "1 MB number",
        request("1" * (1 << 20)),
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "phone_number",
    ),
    (
        "unknown region",
        request("13800138000", default_region="XX"),
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "default_region",
    ),
    (
        "malformed region",
        request("13800138000", default_region="CHN"),
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "default_region",
    ),
    (
        "bad ip",
        request("+8613800138000", event={"ip": "999.1.1.1"}),
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "event.ip",
    ),
    (
        "unknown tenant",
        request("+8613800138000", tenant="nobody"),
        None,
        grpc.StatusCode.NOT_FOUND,
        None,
    ),
    (
        "no token",
        request("+8613800138000", tenant="secure"),
        None,
        grpc.StatusCode.UNAUTHENTICATED,
        None,
    ),
    (
        "wrong token",
        request("+8613800138000", tenant="secure"),
        "guess",
        grpc.StatusCode.UNAUTHENTICATED,
        None,
    ),
    (
        "other tenant's token",
        request("+8613800138000", tenant="secure"),
        OTHER_TOKEN,
        grpc.StatusCode.PERMISSION_DENIED,
        None,
    ),
    (
        "right token",
        request("+8613800138000", tenant="secure"),
        SECURE_TOKEN,
        grpc.StatusCode.OK,
        None,
    ),
]


@pytest.mark.parametrize(
    ("req", "token", "code", "field"),
    [row[1:] for row in STATUS_TABLE],
    ids=[row[0] for row in STATUS_TABLE],
)
async def test_status_codes(
    multi: Running,
    req: pb.EvaluateRequest,
    token: str | None,
    code: grpc.StatusCode,
    field: str | None,
) -> None:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    if code == grpc.StatusCode.OK:
        resp = await multi.decisions.Evaluate(req, metadata=metadata, timeout=5)
        assert resp.action != pb.ACTION_UNSPECIFIED
        assert resp.policy_version
        assert resp.request_id
        return
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await multi.decisions.Evaluate(req, metadata=metadata, timeout=5)
    assert info.value.code() == code, info.value.details()
    if field is not None:
        assert field in bad_request_fields(info.value)


async def test_invalid_number_is_evaluated_not_rejected(demo: Running) -> None:
    resp = await demo.decisions.Evaluate(request("+86 123"), timeout=5)
    assert resp.phone.valid is False
    assert resp.phone.e164 == "+86123"


async def test_request_id_is_echoed(demo: Running) -> None:
    resp = await demo.decisions.Evaluate(request("+8613800138000", request_id="abc-1"), timeout=5)
    assert resp.request_id == "abc-1"


async def test_batch_with_a_bad_item_in_the_middle(demo: Running) -> None:
    items = [request(f"+861380013{i:04d}", request_id=f"r{i}") for i in range(9)]
    items[4] = request("not a number", request_id="bad")
    resp = await demo.decisions.EvaluateBatch(pb.EvaluateBatchRequest(requests=items), timeout=10)
    assert len(resp.results) == 9
    for i, result in enumerate(resp.results):
        if i == 4:
            assert result.WhichOneof("result") == "error"
            assert result.error.code == code_pb2.INVALID_ARGUMENT
            detail = error_details_pb2.BadRequest()
            assert result.error.details[0].Unpack(detail)
            assert detail.field_violations[0].field == "requests[4].phone_number"
        else:
            assert result.WhichOneof("result") == "response"
            assert result.response.request_id == f"r{i}"


async def test_batch_over_limit_is_invalid(demo: Running) -> None:
    items = [request("+8613800138000")] * 1001
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await demo.decisions.EvaluateBatch(pb.EvaluateBatchRequest(requests=items), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests" in bad_request_fields(info.value)


async def test_batch_of_1000_and_unknown_tenant_item(demo: Running) -> None:
    items = [request(f"+86139{i:08d}", dry_run=True) for i in range(1000)]
    items[10] = request("+8613900000010", tenant="nobody")
    resp = await demo.decisions.EvaluateBatch(pb.EvaluateBatchRequest(requests=items), timeout=30)
    assert len(resp.results) == 1000
    assert resp.results[10].error.code == code_pb2.NOT_FOUND
    assert sum(r.WhichOneof("result") == "response" for r in resp.results) == 999


async def test_stream_of_1000_stays_open_after_bad_items(demo: Running) -> None:
    def gen():  # type: ignore[no-untyped-def]
        for i in range(1000):
            phone = "garbage" if i % 100 == 50 else f"+86137{i:08d}"
            yield request(phone, request_id=f"s{i}", dry_run=True)

    call = demo.decisions.EvaluateStream(gen(), timeout=60)
    seen = []
    async for resp in call:
        seen.append(resp)
    assert await call.code() == grpc.StatusCode.OK
    assert [r.request_id for r in seen] == [f"s{i}" for i in range(1000)]
    bad = [i for i, r in enumerate(seen) if r.HasField("error")]
    assert bad == list(range(50, 1000, 100))
    assert all(seen[i].error.code == code_pb2.INVALID_ARGUMENT for i in bad)
    assert all(seen[i].action == pb.ACTION_UNSPECIFIED for i in bad)
    assert all(r.action != pb.ACTION_UNSPECIFIED for i, r in enumerate(seen) if i not in bad)


async def test_fail_closed_is_unavailable_and_fail_open_is_degraded(rules_copy: Path) -> None:
    add_tenant(rules_copy, "closed", 'fail_mode = "closed"\n')
    # Nothing listens on port 1: every backend call fails at once.
    async with running_server(rules_copy, state="redis://127.0.0.1:1/0") as srv:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await srv.decisions.Evaluate(request("+8613800138000", tenant="closed"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        resp = await srv.decisions.Evaluate(request("+8613800138000"), timeout=5)
        assert resp.degraded is True
        assert resp.action != pb.ACTION_UNSPECIFIED


async def test_explain_lists_every_aggregate_with_its_value(multi: Running) -> None:
    """explain=true answers the value of each aggregate the policy read, in policy order;
    without explain the list stays empty (it costs a message field per aggregate)."""
    number = "+8613800000123"
    sms = {"scene": "sms_code", "app_id": "shop"}
    for _ in range(2):
        await multi.decisions.Evaluate(request(number, event=sms), timeout=5)
    plain = await multi.decisions.Evaluate(request(number, event=sms), timeout=5)
    assert list(plain.aggregates) == []
    resp = await multi.decisions.Evaluate(request(number, event=sms, explain=True), timeout=5)
    values = {a.id: (a.value, a.known) for a in resp.aggregates}
    assert values["codes_today"] == (4, True)
    assert values["code_apps_today"] == (1, True)
    assert values["segment_run_today"] == (0, True)  # not a registration, never seen
    assert "privacy_hits_1h@1h" in values  # sustained() windows are listed by id


async def test_an_event_older_than_the_lateness_bound_is_refused(multi: Running) -> None:
    """docs/state.md §1: an event stamped five years back cannot write into old windows or
    age a number; it is refused, naming the field. A day back is within the bound."""
    import time

    from google.protobuf.timestamp_pb2 import Timestamp

    def stamped(seconds_ago: float) -> pb.EvaluateRequest:
        ts = Timestamp()
        ts.FromSeconds(int(time.time() - seconds_ago))
        return request("+8613800000124", event=pb.Event(scene="login", occurred_at=ts))

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await multi.decisions.Evaluate(stamped(5 * 365 * 86_400), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(info.value) == ["event.occurred_at"]
    assert "at most 1d late" in (info.value.details() or "")
    ok = await multi.decisions.Evaluate(stamped(86_400 - 60), timeout=5)
    assert ok.action == pb.ACTION_ALLOW
