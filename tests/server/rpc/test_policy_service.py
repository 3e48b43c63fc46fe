"""PolicyService over gRPC: status per tenant and the checker risk ops call before a push."""

from __future__ import annotations

from support import Running

from server.api import policy_pb2 as ppb


async def test_status_of_every_tenant(demo: Running) -> None:
    resp = await demo.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(), timeout=5)
    (st,) = resp.tenants
    assert st.tenant == "demo"
    assert len(st.version) == 16
    assert st.rule_count == demo.server.registry.get("demo").rule_count  # type: ignore[union-attr]
    assert st.list_count == 3  # privacy numbers, code platforms, data-centre ranges
    assert st.loaded_at.seconds > 0
    assert st.last_error == ""


async def test_validate_reports_every_error_with_position(demo: Running) -> None:
    source = (
        "rule a {\n  when phone.vaild\n  then block\n}\n"
        "rule b {\n  when event.scene == 5\n  then blok\n}\n"
    )
    resp = await demo.policies.ValidatePolicy(
        ppb.ValidatePolicyRequest(tenant="demo", path="demo/new.rf", source=source), timeout=5
    )
    assert resp.ok is False
    errors = [d for d in resp.diagnostics if d.severity == ppb.SEVERITY_ERROR]
    assert len(errors) >= 3
    first = errors[0]
    assert (first.path, first.line, first.column) == ("demo/new.rf", 2, 8)
    assert "vaild" in first.message
    assert first.rendered.startswith("demo/new.rf:2:8: error:")
    assert "^" in first.rendered
    assert {d.line for d in errors} >= {2, 6, 7}


async def test_validate_accepts_a_good_policy_with_library_imports(demo: Running) -> None:
    source = (
        'import "_shared/segments.rf"\n'
        "rule mvno_signup {\n  when event.scene == REGISTRATION and phone.segment_kind in "
        'BLACK_CARD_KINDS\n  then review\n  reason "black card"\n}\n'
    )
    resp = await demo.policies.ValidatePolicy(
        ppb.ValidatePolicyRequest(tenant="demo", path="demo/extra.rf", source=source), timeout=5
    )
    assert resp.ok, [d.rendered for d in resp.diagnostics]


async def test_unknown_tenant_status_is_not_found(demo: Running) -> None:
    import grpc
    import pytest

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await demo.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(tenant="nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
