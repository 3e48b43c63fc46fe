from __future__ import annotations

import pytest

from server.phone import mask


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+8613800138000", "+86138****8000"),
        ("+861440123456789", "+86144****6789"),
        ("+16502530000", "+165****000"),
        ("+442079460000", "+4420****000"),
        ("+8695588", "+869****8"),
        ("+86123", "+86****3"),
        ("+861", "+86****"),
        ("13800138000", "****"),  # not E.164: could be a raw number, hide it all
        ("+86 138 0013 8000", "****"),
        ("", "****"),
        ("+", "****"),
    ],
)
def test_mask(e164: str, masked: str) -> None:
    assert mask(e164) == masked


@pytest.mark.parametrize("e164", ["+8613800138000", "+16502530000", "+861440123456789"])
def test_mask_hides_at_least_four_national_digits(e164: str) -> None:
    masked = mask(e164)
    shown = sum(ch.isdigit() for ch in masked)
    assert len(e164) - 1 - shown >= 3
    assert "****" in masked
