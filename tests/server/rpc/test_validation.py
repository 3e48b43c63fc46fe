from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from server.api import decision_pb2 as pb
from server.rpc.errors import RequestError
from server.rpc.validation import validate_batch_size, validate_request


def ok_request(**kw: object) -> pb.EvaluateRequest:
    base: dict[str, object] = {"tenant": "demo", "phone_number": "+8613800138000"}
    base.update(kw)
    return pb.EvaluateRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.EvaluateRequest(phone_number="+8613800138000"), "tenant"),
        (ok_request(tenant="Demo"), "tenant"),
        (ok_request(tenant="../etc"), "tenant"),
        (ok_request(tenant="a" * 65), "tenant"),
        (ok_request(tenant="de\x00mo"), "tenant"),
        (ok_request(phone_number=""), "phone_number"),
        (ok_request(phone_number="   "), "phone_number"),
        (ok_request(phone_number="1" * (1 << 20)), "phone_number"),
        (ok_request(default_region="CHN"), "default_region"),
        (ok_request(default_region="C1"), "default_region"),
        (ok_request(request_id="x" * 129), "request_id"),
        (ok_request(request_id="id with spaces"), "request_id"),
        (ok_request(event=pb.Event(ip="300.1.1.1")), "event.ip"),
        (ok_request(event=pb.Event(scene="s" * 65)), "event.scene"),
        (ok_request(event=pb.Event(device_id="d" * 257)), "event.device_id"),
        (
            ok_request(event=pb.Event(attributes={f"k{i}": "v" for i in range(33)})),
            "event.attributes",
        ),
        (ok_request(event=pb.Event(attributes={"k": "v" * 513})), "event.attributes['k']"),
    ],
)
def test_invalid_requests_name_the_field(request_: pb.EvaluateRequest, field: str) -> None:
    with pytest.raises(RequestError) as info:
        validate_request(request_)
    err = info.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in err.violations]
    status = err.to_status()
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert field in [v.field for v in detail.field_violations]


def test_all_violations_are_reported_at_once() -> None:
    with pytest.raises(RequestError) as info:
        validate_request(pb.EvaluateRequest(default_region="XYZ", event=pb.Event(ip="nope")))
    fields = {v.field for v in info.value.violations}
    assert fields == {"tenant", "phone_number", "default_region", "event.ip"}


@pytest.mark.parametrize(
    "request_",
    [
        ok_request(),
        ok_request(default_region="cn", request_id="req-1"),
        ok_request(
            event=pb.Event(ip="2001:db8::1", scene="register", attributes={"channel": "web"})
        ),
        ok_request(phone_number="1" * 64),
    ],
)
def test_valid_requests_pass(request_: pb.EvaluateRequest) -> None:
    validate_request(request_)


def test_batch_limits() -> None:
    validate_batch_size(0)
    validate_batch_size(1000)
    with pytest.raises(RequestError) as info:
        validate_batch_size(1001)
    assert info.value.violations[0].field == "requests"
