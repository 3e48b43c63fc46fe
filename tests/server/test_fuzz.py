"""Arbitrary requests never get anything but OK / INVALID_ARGUMENT / NOT_FOUND, and the
server stays up."""

from __future__ import annotations

import asyncio

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Running

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}

texts = st.text(max_size=80)
phones = st.one_of(
    texts,
    st.from_regex(r"\+?[0-9０-９ ()\-.]{0,25}", fullmatch=True),
    st.sampled_from(["+8613800138000", "tel:+86-138", "00", "+", "8613800138000", "1" * 70]),
)
events = st.builds(
    pb.Event,
    scene=st.sampled_from(["register", "login", "sms_code", ""]) | texts,
    app_id=texts,
    ip=st.sampled_from(["", "203.0.113.9", "::1", "nope"]) | texts,
    device_id=texts,
    attributes=st.dictionaries(texts, texts, max_size=40),
)
requests = st.builds(
    pb.EvaluateRequest,
    tenant=st.sampled_from(["demo", "", "nobody", "Demo", "../x"]) | texts,
    phone_number=phones,
    default_region=st.sampled_from(["", "CN", "US", "cn", "ZZ", "CHN"]) | texts,
    event=st.none() | events,
    request_id=texts,
    dry_run=st.booleans(),
    explain=st.booleans(),
)


def _fuzz(address: str) -> None:
    with grpc.insecure_channel(address) as ch:
        stub = pb_grpc.DecisionServiceStub(ch)

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(requests)
        def check(req: pb.EvaluateRequest) -> None:
            code = grpc.StatusCode.OK
            try:
                stub.Evaluate(req, timeout=10)
            except grpc.RpcError as exc:
                code = exc.code()
            assert code in ALLOWED, code

        check()
        # Still up and deciding.
        resp = stub.Evaluate(
            pb.EvaluateRequest(tenant="demo", phone_number="+8613800138000"), timeout=5
        )
        assert resp.action != pb.ACTION_UNSPECIFIED


async def test_arbitrary_requests(demo: Running) -> None:
    await asyncio.to_thread(_fuzz, demo.address)
