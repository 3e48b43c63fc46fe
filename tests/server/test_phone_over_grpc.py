"""Every number format real traffic sends, and every segment kind, through Evaluate."""

from __future__ import annotations

import pytest
from support import Running, request

from server.api import decision_pb2 as pb

FORMATS = [
    ("+86 138 0013 8000", ""),
    ("008613800138000", ""),
    ("8613800138000", ""),
    ("138-0013-8000", "CN"),
    ("13800138000", "CN"),
    ("１３８００１３８０００", "CN"),
    ("tel:+86-138-0013-8000", ""),
    ("13800138000（微信同号）", "CN"),
]


@pytest.mark.parametrize(("raw", "region"), FORMATS)
async def test_formats(demo: Running, raw: str, region: str) -> None:
    resp = await demo.decisions.Evaluate(
        request(raw, default_region=region, dry_run=True), timeout=5
    )
    assert resp.phone.e164 == "+8613800138000"
    assert resp.phone.valid
    assert resp.phone.region == "CN"
    assert resp.phone.segment_kind == "mobile"
    assert resp.phone.carrier == "China Mobile"


SEGMENTS = [
    ("+8613800138000", "mobile"),
    ("+8617012345678", "mvno"),
    ("+8614512345678", "data_only"),
    ("+861440123456789", "iot"),
    ("+8613491234567", "satellite"),
    ("+8617406123456", "emergency"),
    ("+14155550123", ""),
]


@pytest.mark.parametrize(("number", "kind"), SEGMENTS)
async def test_segment_kinds(demo: Running, number: str, kind: str) -> None:
    resp = await demo.decisions.Evaluate(request(number, dry_run=True), timeout=5)
    assert resp.phone.segment_kind == kind


async def test_iot_number_registering_is_blocked(demo: Running) -> None:
    resp = await demo.decisions.Evaluate(
        request("+861440123456789", event=pb.Event(scene="register"), dry_run=True), timeout=5
    )
    assert resp.phone.valid is False
    assert resp.action == pb.ACTION_BLOCK
    assert {"iot_number_register", "invalid_number_register"} <= {m.rule for m in resp.matches}
