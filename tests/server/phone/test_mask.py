from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsl.facts import PhoneFacts
from dsl.runtime import masked
from server.phone import mask


@pytest.mark.parametrize(
    ("e164", "expected"),
    [
        ("+8613800138000", "+8613****00"),
        ("+861440123456789", "+86144****789"),
        ("+16502530000", "+165****00"),
        ("+442079460000", "+4420****00"),
        ("+8695588", "+869****8"),
        ("+86123", "+86****"),
        ("+861", "+86****"),
        ("13800138000", "****"),  # not E.164: could be a raw number, hide it all
        ("+86 138 0013 8000", "****"),
        ("+861234567", "+861****7"),  # once shown as +86123****4567
        ("", "****"),
        ("+", "****"),
        ("+٣٣٣٣", "****"),  # digits that are not ASCII
    ],
)
def test_mask(e164: str, expected: str) -> None:
    assert mask(e164) == expected


@given(st.sampled_from(["1", "44", "86", "852", "971"]), st.text("0123456789", max_size=17))
def test_mask_hides_at_least_the_middle_half(cc: str, national: str) -> None:
    e164 = f"+{cc}{national}"
    shown = mask(e164)
    visible = sum(ch.isdigit() for ch in shown) - len(cc)
    assert visible * 2 <= len(national)
    assert "****" in shown
    # {phone.masked} in a reason is the very same function.
    facts = PhoneFacts(e164=e164, valid=True, country_code=int(cc), national_number=national)
    assert masked(facts) == shown
