"""Raw phone-number text -> PhoneFacts, parsed once and cached.

phonenumbers costs ~30 µs per number (parse + validity + type), and the same numbers
come back again and again (retries, SMS-code resends), so results are cached in a
bounded LRU keyed on the raw text and the default region.

Literal E.164 input (``+`` and digits, nothing else) is taken as written, without
phonenumbers' national-prefix stripping: E.164 has no national prefix, and it makes
``parse(facts.e164)`` return the same facts by construction.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers import carrier as pn_carrier

from dsl.facts import PhoneFacts
from server.geo.home import GEOGRAPHIC_TYPES, HomeLocations, home_locations
from server.phone.segments import Segment, SegmentTable

MAX_RAW_LENGTH: Final = 64
# NFKC can expand one character into many (ligatures, CJK compatibility signs); bound it.
_MAX_NORMALISED_LENGTH: Final = 4 * MAX_RAW_LENGTH
# phonenumbers' limits on the national significant number.
_MIN_NSN_LENGTH: Final = 2
_MAX_NSN_LENGTH: Final = 17
_CN_COUNTRY_CODE: Final = 86
_CN_MOBILE_LENGTH: Final = 11
_CN_IOT_LENGTH: Final = 13

_SEPARATORS = str.maketrans("", "", " \t-.()/\u00a0")
_SUPPORTED_REGIONS: Final = frozenset(phonenumbers.SUPPORTED_REGIONS)
_COUNTRY_CODES: Final = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_TYPE_NAMES: Final = {
    value: name.lower()
    for name, value in vars(phonenumbers.PhoneNumberType).items()
    if name.isupper() and isinstance(value, int)
}
_PARSE_REASONS: Final = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "invalid country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the IDD prefix",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


UNKNOWN_REGION = "unknown default_region"
NO_REGION = "no country code and no default_region"


class PhoneParseError(ValueError):
    """The text is not a phone number at all (a parsed-but-invalid number is not an error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def field(self) -> str:
        """The request field to blame: the region when that is what is wrong or missing."""
        return "default_region" if self.reason in (UNKNOWN_REGION, NO_REGION) else "phone_number"


@dataclass(frozen=True, slots=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    maxsize: int


class PhoneParser:
    """Parses raw phone text into PhoneFacts; thread-safe (the cache is functools.lru_cache)."""

    def __init__(
        self,
        segments: SegmentTable | None = None,
        cache_size: int = 65536,
        homes: HomeLocations | None = None,
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self.segments = segments if segments is not None else SegmentTable.load()
        self.homes = homes if homes is not None else home_locations()
        # Failures are cached too (as their reason), so a flood of junk costs one parse each.
        self._cached = functools.lru_cache(maxsize=cache_size)(self._parse_uncached)

    def parse(self, raw: str, default_region: str = "") -> PhoneFacts:
        """Parse ``raw``; numbers without a country code need ``default_region`` (ISO alpha-2).

        Raises PhoneParseError when ``raw`` is not a phone number, is longer than
        MAX_RAW_LENGTH, or ``default_region`` is not a region phonenumbers knows.
        """
        region = _checked_region(raw, default_region)
        result = self._cached(raw, region)
        if isinstance(result, str):
            raise PhoneParseError(result)
        return result

    def parse_uncached(self, raw: str, default_region: str = "") -> PhoneFacts:
        """``parse`` without touching the cache: for bulk work (loading a list) that would
        otherwise evict the numbers live traffic keeps asking about."""
        region = _checked_region(raw, default_region)
        result = self._parse_uncached(raw, region)
        if isinstance(result, str):
            raise PhoneParseError(result)
        return result

    @property
    def cache_info(self) -> CacheInfo:
        info = self._cached.cache_info()
        return CacheInfo(info.hits, info.misses, info.currsize, info.maxsize or 0)

    def clear_cache(self) -> None:
        self._cached.cache_clear()

    def _parse_uncached(self, raw: str, region: str) -> PhoneFacts | str:
        number = _to_phone_number(raw, region)
        if isinstance(number, str):
            return number
        return self._facts(number)

    def _facts(self, number: phonenumbers.PhoneNumber) -> PhoneFacts:
        cc = number.country_code or 0
        nsn = phonenumbers.national_significant_number(number)
        region = phonenumbers.region_code_for_number(number) or ""
        segment = self._segment(cc, nsn)
        if segment is not None:
            operator = segment.host_operator
        else:
            operator = pn_carrier.name_for_number(number, "en") or ""
        valid = phonenumbers.is_valid_number(number)
        number_type = _TYPE_NAMES.get(phonenumbers.number_type(number), "unknown")
        # As phonenumbers' geocoder: a place for valid numbers of a geographic type only.
        home = (
            self.homes.lookup(nsn)
            if cc == _CN_COUNTRY_CODE and valid and number_type in GEOGRAPHIC_TYPES
            else None
        )
        return PhoneFacts(
            e164=f"+{cc}{nsn}",
            valid=valid,
            region="" if region == phonenumbers.UNKNOWN_REGION else region,
            number_type=number_type,
            carrier=operator,
            segment_kind=segment.kind if segment is not None else "",
            segment_prefix=segment.prefix if segment is not None else "",
            country_code=cc,
            national_number=nsn,
            province=home.province if home is not None else "",
            province_name=home.province_name if home is not None else "",
            city=home.city if home is not None else "",
            city_name=home.city_name if home is not None else "",
        )

    def _segment(self, cc: int, nsn: str) -> Segment | None:
        if cc != _CN_COUNTRY_CODE or not nsn.startswith("1"):
            return None
        if len(nsn) == _CN_MOBILE_LENGTH:
            return self.segments.lookup(nsn)
        if len(nsn) == _CN_IOT_LENGTH:
            # Only IoT segments issue 13-digit numbers; a 13-digit 138... is no segment's.
            seg = self.segments.lookup(nsn)
            return seg if seg is not None and seg.kind == "iot" else None
        return None


def _checked_region(raw: object, default_region: str) -> str:
    """Cheap checks before any parsing work (and before the cache, so junk cannot fill it)."""
    if not isinstance(raw, str):
        raise PhoneParseError("not a string")
    if len(raw) > MAX_RAW_LENGTH:
        raise PhoneParseError("too long")
    region = default_region.strip().upper() if default_region else ""
    if region and region not in _SUPPORTED_REGIONS:
        raise PhoneParseError(UNKNOWN_REGION)
    return region


def _to_phone_number(raw: str, region: str) -> phonenumbers.PhoneNumber | str:
    """The PhoneNumber in ``raw``, or the reason there is none."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        return "empty"
    if len(text) > _MAX_NORMALISED_LENGTH:
        return "too long"
    if text[:4].lower() == "tel:":
        # RFC 3966: the number, then ;-separated parameters (ext, phone-context) we ignore.
        text = text[4:].split(";", 1)[0].strip()
    if text[:1] == "+" and _ascii_digits(text[1:]):
        return _from_e164_digits(text[1:])
    compact = text.translate(_SEPARATORS)
    if _ascii_digits(compact):
        if not region:
            return _without_region(compact)
        return _pn_parse(text, region)
    if compact[:1] == "+" and _ascii_digits(compact[1:]):
        return _pn_parse(text, region or None)
    return _find_in_text(text, region or None)


def _without_region(digits: str) -> phonenumbers.PhoneNumber | str:
    """Digits with no ``+`` and no default region: only the unambiguous international forms."""
    if digits.startswith("00"):
        # 00 is the international prefix in most of the world (and in CN).
        return _from_e164_digits(digits[2:])
    if digits.startswith("861") and len(digits) - 2 in (_CN_MOBILE_LENGTH, _CN_IOT_LENGTH):
        # "8613800138000": a CN mobile with its country code but without the "+".
        return _from_e164_digits(digits)
    return NO_REGION


def _from_e164_digits(digits: str) -> phonenumbers.PhoneNumber | str:
    for length in (1, 2, 3):
        cc = digits[:length]
        if len(cc) == length and int(cc) in _COUNTRY_CODES:
            break
    else:
        return "invalid country code"
    nsn = digits[length:]
    if len(nsn) < _MIN_NSN_LENGTH:
        return "too short"
    if len(nsn) > _MAX_NSN_LENGTH:
        return "too long"
    number = phonenumbers.PhoneNumber(country_code=int(cc), national_number=int(nsn))
    if len(nsn) > 1 and nsn[0] == "0":
        # Mirrors phonenumbers: leading zeros are part of the number (Italy, Côte d'Ivoire...).
        zeros = len(nsn) - len(nsn.lstrip("0"))
        number.italian_leading_zero = True
        number.number_of_leading_zeros = min(zeros, len(nsn) - 1)
    return number


def _pn_parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | str:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return _PARSE_REASONS.get(exc.error_type, "not a phone number")


def _find_in_text(text: str, region: str | None) -> phonenumbers.PhoneNumber | str:
    """The first number inside free text (``13800138000（微信同号）``), strictest match first."""
    for leniency in (phonenumbers.Leniency.VALID, phonenumbers.Leniency.POSSIBLE):
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=leniency):
            return match.number
    return "not a phone number"


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()
