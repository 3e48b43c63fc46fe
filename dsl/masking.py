"""The one way a phone number is masked: logs, traces, decision logs and ``{phone.masked}``.

At least the middle half of the national number is hidden (a quarter of it, rounded
down, stays at each end), and the hidden part is always ``****`` whatever its length.
Anything that is not ``+``, the country code and digits is hidden whole: it may be a raw
number in some other format.
"""

from __future__ import annotations

HIDDEN = "****"


def mask_parts(country_code: str, national: str) -> str:
    """``("86", "13800138000")`` -> ``"+8613****00"``."""
    keep = len(national) // 4
    tail = national[len(national) - keep :] if keep else ""
    return f"+{country_code}{national[:keep]}{HIDDEN}{tail}"


def mask_e164(e164: str, country_code: int) -> str:
    """Mask an E.164 string whose country code is known; ``****`` if it is not E.164."""
    digits = e164[1:]
    cc = str(country_code) if country_code > 0 else ""
    if e164[:1] != "+" or not cc or not (digits.isascii() and digits.isdigit()):
        return HIDDEN
    if not digits.startswith(cc):
        return HIDDEN
    return mask_parts(cc, digits[len(cc) :])
