"""What policies can read: fact fields, helpers, key kinds, actions. The checker's tables."""

from __future__ import annotations

from dsl.aggregates import AggKind, KeyKind
from dsl.ir import Type

PHONE_FIELDS: dict[str, Type] = {
    "e164": Type.STR,
    "valid": Type.BOOL,
    "region": Type.STR,
    "number_type": Type.STR,
    "carrier": Type.STR,
    "segment_kind": Type.STR,
    "segment_prefix": Type.STR,
    "country_code": Type.INT,
    "national_number": Type.STR,
    "masked": Type.STR,  # "+86170****0001": safe to put in reasons
    # Home location of a Chinese number (归属地): ISO 3166-2 "CN-JS", short city "常州".
    "province": Type.STR,
    "province_name": Type.STR,  # "江苏省"
    "city": Type.STR,
    "city_name": Type.STR,  # "常州市"
}
# Fields that ARE the number: reasons are logged, so they may not be interpolated there.
PHONE_PII = frozenset({"e164", "national_number"})

EVENT_FIELDS: dict[str, Type] = {
    "scene": Type.STR,
    "app_id": Type.STR,
    "ip": Type.STR,
    "device_id": Type.STR,
    "occurred_at": Type.INT,  # seconds since the epoch
    "local_hour": Type.INT,  # 0..23 in the policy time zone
    "local_weekday": Type.INT,  # 1 (Monday) .. 7 (Sunday) in the policy time zone
}
LOCAL_TIME_FIELDS = frozenset({"local_hour", "local_weekday"})
# Where event.ip is, from the operator's IP databases (dsl.facts.IpFacts): "" / 0 unknown.
IP_FIELDS: dict[str, Type] = {
    "version": Type.INT,  # 4 or 6; 0 when event.ip is empty or not an address
    "country": Type.STR,  # ISO 3166-1 alpha-2: "CN"
    "province": Type.STR,  # ISO 3166-2, as phone.province: "CN-JS"
    "province_name": Type.STR,
    "city": Type.STR,  # as phone.city in China: "常州"
    "city_name": Type.STR,
    "asn": Type.INT,  # autonomous system number: 4134
    "org": Type.STR,  # its organisation: "CHINANET-BACKBONE"
}

# String helpers: name -> (argument types, result type).
STRING_METHODS: dict[str, tuple[tuple[Type, ...], Type]] = {
    "lower": ((), Type.STR),
    "upper": ((), Type.STR),
    "starts_with": ((Type.STR,), Type.BOOL),
    "ends_with": ((Type.STR,), Type.BOOL),
    "contains": ((Type.STR,), Type.BOOL),
    "matches": ((Type.STR,), Type.BOOL),  # RE2 syntax, searched anywhere in the string
}
PHONE_METHODS: dict[str, tuple[tuple[Type, ...], Type]] = {
    "starts_with": ((Type.STR,), Type.BOOL),
    "prefix": ((Type.INT,), Type.STR),
}

# What an author may write; FIRST_SEEN is made by age() alone (its window is the checker's).
AGG_KINDS = {k.value: k for k in AggKind if k is not AggKind.FIRST_SEEN}
KEY_KINDS = {k.value: k for k in KeyKind}
# Fields a distinct() aggregate may count, by how they are written.
DISTINCT_FIELDS = {
    "event.app_id": "app_id",
    "event.device_id": "device_id",
    "event.ip": "ip",
    "event.scene": "scene",
    "phone": "phone",
    "phone.e164": "phone",
    "phone.province": "phone.province",
    "phone.city": "phone.city",
    "ip.country": "ip.country",
    "ip.province": "ip.province",
    "ip.city": "ip.city",
}
ACTIONS = ("allow", "review", "block")
# What an aggregate's where filter reads of the decision (counting past decisions): the
# action decided, "allow", "review" or "block".
DECISION_FIELDS: dict[str, Type] = {"action": Type.STR}
ON_ERROR = ("skip", "fire", *ACTIONS)
SETTINGS: dict[str, Type] = {
    "timezone": Type.STR,
    "default_action": Type.STR,  # when no rule decides: allow (default), review or block
    "review_score": Type.INT,  # summed rule scores at or above this make a review
    "block_score": Type.INT,  # ... and at or above this a block
}
RESERVED = frozenset({"phone", "event", "ip", "tenant", "true", "false", "today"})
# Functions a condition can call: name -> what the argument list looks like.
FUNCTIONS = {"sustained": "sustained(condition, duration)", "age": "age(per KEY)"}
PRIORITY_RANGE = (-1000, 1000)
SCORE_RANGE = (-1000, 1000)
MAX_PREFIX_DIGITS = 15
# The longest attribute key a request may send (server/rpc/validation.py): `per attribute`
# names no longer key than that.
MAX_ATTRIBUTE_KEY = 64
# per ip/N: N up to 32 counts IPv4 networks, above 32 IPv6 networks (docs/dsl.md).
IPV4_BITS = 32
IPV6_BITS = 128
MIN_NETWORK_BITS = 8
MAX_KEYS = 3  # per (number, app, ip) at most
# What age() can be kept per: things that are "new" or "old" (not segments or lists).
AGE_KEYS = frozenset({KeyKind.NUMBER, KeyKind.DEVICE, KeyKind.IP, KeyKind.APP, KeyKind.ATTRIBUTE})
