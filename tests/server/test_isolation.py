"""One tenant's broken policy, flood of traffic or failing backend leaves another tenant's
decisions as they were."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from support import request, running_server

from server.api import decision_pb2 as pb
from server.api import policy_pb2 as ppb
from server.state.catalog import build_catalog


def reg(phone: str, tenant: str, when: float) -> pb.EvaluateRequest:
    ts = Timestamp()
    ts.FromNanoseconds(int(when * 1e9))
    return request(phone, tenant=tenant, event=pb.Event(scene="register", occurred_at=ts))


async def test_isolation(rules_copy: Path) -> None:
    shutil.copytree(rules_copy / "demo", rules_copy / "noisy")
    shutil.copytree(rules_copy / "demo", rules_copy / "broken")
    (rules_copy / "broken" / "policy.rf").write_text("rule oops { when phone.nope then block }\n")
    shutil.copytree(rules_copy / "demo", rules_copy / "flaky")
    # Its own Redis, which is down (nothing listens on port 1), and it fails closed.
    (rules_copy / "flaky" / "tenant.toml").write_text(
        'fail_mode = "closed"\nstate = "flaky-redis"\n'
    )
    backends = build_catalog(["flaky-redis=redis://127.0.0.1:1/0"], ["flaky-redis=flaky"])
    now = time.time() - 60
    async with running_server(rules_copy, state_backends=backends) as s:
        # The broken tenant is reported, and answered UNAVAILABLE rather than served.
        st = await s.policies.GetPolicyStatus(
            ppb.GetPolicyStatusRequest(tenant="broken"), timeout=5
        )
        assert "broken/policy.rf:1:" in st.tenants[0].last_error
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.decisions.Evaluate(reg("+8613800138000", "broken", now), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # The flaky tenant's backend is down: it fails closed...
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.decisions.Evaluate(reg("+8613800138000", "flaky", now), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # ...the noisy tenant floods a run of consecutive numbers...
        for i in range(300):
            await s.decisions.Evaluate(reg(f"+86139001{i:05d}", "noisy", now), timeout=5)
        noisy = await s.decisions.Evaluate(reg("+8613900100300", "noisy", now), timeout=5)
        assert noisy.action == pb.ACTION_BLOCK
        # ...and demo, asked about the same numbers, sees none of it.
        for i in range(3):
            r = await s.decisions.Evaluate(reg(f"+86139001{i:05d}", "demo", now), timeout=5)
            assert r.action == pb.ACTION_ALLOW
            assert not r.degraded
        assert r.matches[0].rule == "consecutive_numbers_strict"  # its own run of 3


async def test_a_tenant_over_its_limit_is_refused_and_others_are_not(rules_copy: Path) -> None:
    shutil.copytree(rules_copy / "demo", rules_copy / "noisy")
    (rules_copy / "noisy" / "tenant.toml").write_text("[limits]\nmax_rps = 5\n")
    now = time.time() - 60
    async with running_server(rules_copy) as s:
        codes = []
        for i in range(20):
            try:
                await s.decisions.Evaluate(reg(f"+86139002{i:05d}", "noisy", now), timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
        # A burst of one second's worth passes, then the bucket is empty.
        assert codes[:5] == [grpc.StatusCode.OK] * 5
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[5:]
        for i in range(20):
            r = await s.decisions.Evaluate(reg(f"+86139003{i:05d}", "demo", now), timeout=5)
            assert r.action != pb.ACTION_UNSPECIFIED
