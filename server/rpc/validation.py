"""Request validation: cheap checks that run before any parsing work.

Limits keep a hostile or broken caller from buying expensive work (a 1 MB "phone number"
is rejected by length, never parsed). Every violation names its field, as
``google.rpc.BadRequest`` expects, and all violations of a request are reported at once.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from server.api import decision_pb2
from server.bundle.tenant_config import TENANT_NAME
from server.rpc.errors import FieldViolation, RequestError, invalid_many

MAX_PHONE = 64
MAX_TENANT = 64
MAX_REQUEST_ID = 128
MAX_SCENE = 64
MAX_APP_ID = 128
MAX_DEVICE_ID = 256
MAX_IP = 64
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 512
MAX_BATCH = 1000

_REGION = re.compile(r"[A-Za-z]{2}")
_ID_CHARS = re.compile(r"[\x21-\x7e]*")


@lru_cache(maxsize=65536)
def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _length(out: list[FieldViolation], name: str, value: str, limit: int) -> bool:
    if len(value) > limit:
        out.append(FieldViolation(name, f"longer than {limit} characters ({len(value)})"))
        return False
    return True


def validate_request(req: decision_pb2.EvaluateRequest, prefix: str = "") -> None:
    """Raise INVALID_ARGUMENT listing every violation in ``req``."""
    out: list[FieldViolation] = []
    if not req.tenant:
        out.append(FieldViolation(f"{prefix}tenant", "required"))
    elif _length(out, f"{prefix}tenant", req.tenant, MAX_TENANT) and not TENANT_NAME.fullmatch(
        req.tenant
    ):
        out.append(FieldViolation(f"{prefix}tenant", "must match [a-z0-9][a-z0-9_-]* (lower case)"))
    if not req.phone_number.strip():
        out.append(FieldViolation(f"{prefix}phone_number", "required"))
    else:
        _length(out, f"{prefix}phone_number", req.phone_number, MAX_PHONE)
    if req.default_region and not _REGION.fullmatch(req.default_region):
        out.append(FieldViolation(f"{prefix}default_region", "must be an ISO 3166-1 alpha-2 code"))
    if _length(out, f"{prefix}request_id", req.request_id, MAX_REQUEST_ID) and not (
        _ID_CHARS.fullmatch(req.request_id)
    ):
        out.append(FieldViolation(f"{prefix}request_id", "must be printable ASCII"))
    if req.HasField("event"):
        _validate_event(out, req.event, f"{prefix}event.")
    if out:
        raise invalid_many(out)


def _validate_event(out: list[FieldViolation], ev: decision_pb2.Event, p: str) -> None:
    _length(out, f"{p}scene", ev.scene, MAX_SCENE)
    _length(out, f"{p}app_id", ev.app_id, MAX_APP_ID)
    _length(out, f"{p}device_id", ev.device_id, MAX_DEVICE_ID)
    if ev.ip and _length(out, f"{p}ip", ev.ip, MAX_IP) and not _is_ip(ev.ip):
        out.append(FieldViolation(f"{p}ip", "not an IPv4 or IPv6 address"))
    if ev.HasField("occurred_at"):
        ts = ev.occurred_at
        if not (0 <= ts.seconds <= 253402300799 and 0 <= ts.nanos < 1_000_000_000):
            out.append(FieldViolation(f"{p}occurred_at", "outside 0001..9999 or bad nanos"))
    if len(ev.attributes) > MAX_ATTRIBUTES:
        out.append(FieldViolation(f"{p}attributes", f"more than {MAX_ATTRIBUTES} entries"))
    else:
        for key, value in ev.attributes.items():
            _length(out, f"{p}attributes[{key[:MAX_ATTRIBUTE_KEY]!r}]", key, MAX_ATTRIBUTE_KEY)
            _length(out, f"{p}attributes[{key[:MAX_ATTRIBUTE_KEY]!r}]", value, MAX_ATTRIBUTE_VALUE)


def validate_batch_size(n: int) -> None:
    if n > MAX_BATCH:
        raise invalid_many([FieldViolation("requests", f"more than {MAX_BATCH} items ({n})")])


__all__ = ["MAX_BATCH", "TENANT_NAME", "RequestError", "validate_batch_size", "validate_request"]
