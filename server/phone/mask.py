"""Masking phone numbers for logs: enough to eyeball a pattern, too little to dial."""

from __future__ import annotations

import phonenumbers

_COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_HIDDEN = "****"


def mask(e164: str) -> str:
    """``"+8613800138000"`` -> ``"+86138****8000"``.

    Keeps the country code and at most 3 leading and 4 trailing national digits (fewer
    for numbers shorter than 11 digits, so at least 4 of 11 stay hidden).
    Anything that is not ``+`` and digits is masked whole: it may be a raw number in
    some other format.
    """
    digits = e164[1:]
    if e164[:1] != "+" or not (digits.isascii() and digits.isdigit()):
        return _HIDDEN
    cc = next((digits[:n] for n in (1, 2, 3) if int(digits[:n]) in _COUNTRY_CODES), "")
    national = digits[len(cc) :]
    # 3 + 4 of 11 is the usual CN convention; shorter numbers show proportionally less.
    n = len(national)
    head, tail = min(3, n * 3 // 11), min(4, n * 4 // 11)
    return f"+{cc}{national[:head]}{_HIDDEN}{national[len(national) - tail :]}"
