"""Masking phone numbers for logs: the same function as ``{phone.masked}`` in reasons."""

from __future__ import annotations

import phonenumbers

from dsl.masking import HIDDEN, mask_e164

_COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def mask(e164: str) -> str:
    """``"+8613800138000"`` -> ``"+8613****00"`` (see :mod:`dsl.masking`).

    Only the E.164 text is known here, so the country code is found in phonenumbers'
    table (1 to 3 digits, longest-first is never ambiguous in E.164).
    """
    digits = e164[1:]
    if e164[:1] != "+" or not (digits.isascii() and digits.isdigit()):
        return HIDDEN
    cc = next((int(digits[:n]) for n in (1, 2, 3) if int(digits[:n]) in _COUNTRY_CODES), 0)
    return mask_e164(e164, cc)
