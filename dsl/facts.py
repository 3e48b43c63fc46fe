"""The facts a policy reads: what the number is, what the event is, which tenant asks.

The server builds these once per request (phone facts come from a cache); the compiled
policy only reads them. Frozen and slotted so a fact can never change mid-evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PhoneFacts:
    """What a phone number is, independent of any event.

    ``number_type`` is the lower-case name of phonenumbers' ``PhoneNumberType``
    (``mobile``, ``fixed_line``, ``fixed_line_or_mobile``, ``voip``, ``toll_free``, ...,
    ``unknown``). ``segment_kind`` comes from the CN segment table (``mobile``, ``mvno``,
    ``data_only``, ``iot``, ``satellite``, ``emergency``) and is empty outside CN;
    ``segment_prefix`` is the table prefix that matched (``"1703"``), empty when none did.
    """

    e164: str
    valid: bool
    region: str = ""
    number_type: str = "unknown"
    carrier: str = ""
    segment_kind: str = ""
    segment_prefix: str = ""
    country_code: int = 0
    national_number: str = ""

    @property
    def digits(self) -> str:
        """E.164 without the leading ``+``: what prefix helpers compare against."""
        return self.e164[1:] if self.e164.startswith("+") else self.e164


@dataclass(frozen=True, slots=True)
class EventFacts:
    """The event around the number. ``occurred_at`` is seconds since the epoch (UTC)."""

    scene: str = ""
    app_id: str = ""
    ip: str = ""
    device_id: str = ""
    occurred_at: float = 0.0
    attributes: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Facts:
    tenant: str
    phone: PhoneFacts
    event: EventFacts
