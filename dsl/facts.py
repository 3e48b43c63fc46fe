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
    ``province`` (ISO 3166-2, ``CN-JS``) and ``city`` (``常州``) are a valid Chinese number's
    home location (归属地) with their display names (``江苏省``, ``常州市``); empty where
    only the country is known and outside China (docs/dsl.md).
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
    province: str = ""
    province_name: str = ""
    city: str = ""
    city_name: str = ""

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
class IpFacts:
    """Where the event's IP address is, from the IP databases the operator configured.

    ``version`` is 4 or 6 for an address, 0 when ``event.ip`` is empty or not an address.
    ``country`` is ISO 3166-1 alpha-2, ``province`` ISO 3166-2 (``CN-JS``: the form
    ``phone.province`` has), ``city`` the same short form as ``phone.city`` in China;
    ``asn`` and ``org`` the network's autonomous system. Empty (0) where no database knows.
    """

    version: int = 0
    country: str = ""
    province: str = ""
    province_name: str = ""
    city: str = ""
    city_name: str = ""
    asn: int = 0
    org: str = ""


NO_IP = IpFacts()


@dataclass(frozen=True, slots=True)
class Facts:
    tenant: str
    phone: PhoneFacts
    event: EventFacts
    ip: IpFacts = NO_IP
