"""One list entry's text -> what it matches: an exact number, a prefix or a range.

Numbers are handled as their E.164 digits without the ``+``; as an int for exact
numbers and range ends (compact, and E.164 never starts with 0 so no digit is lost),
as a string for prefixes (compared against string slices at lookup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import phonenumbers

from server.phone import PhoneParseError, PhoneParser

MAX_E164_DIGITS: Final = 15
_CC1: Final = frozenset(str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE if c < 10)
_CC2: Final = frozenset(str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE if 10 <= c < 100)
_CC3: Final = frozenset(str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE if c >= 100)


@dataclass(frozen=True, slots=True)
class Exact:
    number: int


@dataclass(frozen=True, slots=True)
class Prefix:
    digits: str


@dataclass(frozen=True, slots=True)
class Range:
    low: int
    high: int


Entry = Exact | Prefix | Range


class EntryError(ValueError):
    """Why an entry's text is not an entry; the loader adds file:line."""


def e164_digits(text: str) -> str | None:
    """The digits of a literal E.164 number (``+8613800138000``), or None if it is not one.

    The cheap check the loader runs on every line instead of phonenumbers: ``+``, 3-15
    ASCII digits, a known country code.
    """
    digits = text[1:]
    if (
        text[:1] != "+"
        or not 3 <= len(digits) <= MAX_E164_DIGITS
        or not (digits.isascii() and digits.isdigit())
    ):
        return None
    if digits[:1] in _CC1 or digits[:2] in _CC2 or digits[:3] in _CC3:
        return digits
    return None


def parse_entry(text: str, default_region: str, parser: PhoneParser) -> Entry:
    """Classify and normalise one entry; raises EntryError saying what is wrong."""
    if not text:
        raise EntryError("empty entry")
    if text.endswith("*"):
        return Prefix(_prefix_digits(text[:-1], default_region, parser))
    if ".." in text:
        return _range(text, default_region, parser)
    return Exact(_number(text, default_region, parser))


# What a written number may hold besides digits: the separators people type. Anything else
# (a letter O for a zero, a stray "abc") is an error, never handed to phonenumbers, which
# would read letters as a keypad's or stop at them and load a shorter, other number.
_SEPARATORS: Final = frozenset("+-. ()\u3000\uff0b\uff0d\uff08\uff09")


def exact_number(text: str, default_region: str, parser: PhoneParser) -> str:
    """One number written as a list entry is (no prefix, no range), as E.164: the same
    strict reading for a list file's row and a number added through PolicyService."""
    return f"+{_number(text.strip(), default_region, parser)}"


def _number(text: str, default_region: str, parser: PhoneParser) -> int:
    digits = e164_digits(text)
    if digits is not None:
        return int(digits)
    for i, ch in enumerate(text):
        if not (ch.isdecimal() or ch in _SEPARATORS):
            # The character and where, never the entry: list files hold personal data.
            raise EntryError(f"not a phone number: {ch!r} (character {i + 1}) is not a digit")
    if text[:1] == "+" and text[1:].isascii() and text[1:].isdigit():
        # Literal E.164 that failed the cheap check: say which part is wrong.
        if len(text) - 1 > MAX_E164_DIGITS:
            raise EntryError(f"not a phone number: more than {MAX_E164_DIGITS} digits")
        raise EntryError("not a phone number: unknown country code or too short")
    try:
        # Uncached: a bulk load must not evict the numbers live traffic asks about.
        facts = parser.parse_uncached(text, default_region)
    except PhoneParseError as exc:
        raise EntryError(f"not a phone number ({exc.reason})") from None
    return int(facts.digits)


def _prefix_digits(body: str, default_region: str, parser: PhoneParser) -> str:
    if body.startswith("+"):
        digits = body[1:]
        if not digits or not (digits.isascii() and digits.isdigit()):
            raise EntryError("bad prefix: expected '+' and digits before '*'")
        if digits[0] == "0":
            raise EntryError("bad prefix: no country code starts with 0")
    else:
        if not body or not (body.isascii() and body.isdigit()):
            raise EntryError("bad prefix: expected digits before '*'")
        if body[0] == "0":
            # A trunk prefix ("0" in CN, GB, ...) is not part of the E.164 number.
            raise EntryError("bad prefix: a national prefix must not start with 0; use +<cc>...")
        cc = phonenumbers.country_code_for_region(default_region.upper()) if default_region else 0
        if not cc:
            raise EntryError("bad prefix: national prefix needs a known default_region")
        digits = f"{cc}{body}"
    if len(digits) > MAX_E164_DIGITS:
        raise EntryError(f"bad prefix: more than {MAX_E164_DIGITS} digits")
    return digits


def _range(text: str, default_region: str, parser: PhoneParser) -> Range:
    low_text, _, high_text = text.partition("..")
    low_text, high_text = low_text.strip(), high_text.strip()
    if not low_text or not high_text:
        raise EntryError("bad range: expected <first>..<last>")
    try:
        low = _number(low_text, default_region, parser)
        high = _number(high_text, default_region, parser)
    except EntryError as exc:
        raise EntryError(f"bad range: {exc}") from None
    if len(str(low)) != len(str(high)):
        raise EntryError("bad range: both ends must have the same number of digits")
    if low > high:
        raise EntryError("reversed range: first is greater than last")
    return Range(low, high)
