"""Shared helpers for the policy-language tests: hand-made phone facts and a list view."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dsl.facts import EventFacts, Facts, PhoneFacts

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "dsl" / "golden"
UPDATE_GOLDEN = os.environ.get("RINGFENCE_UPDATE_GOLDEN") == "1"

# A slice of the CN segment table (reference/cn_segments.csv), longest prefix wins.
_SEGMENTS = {
    "130": "mobile",
    "138": "mobile",
    "139": "mobile",
    "1349": "satellite",
    "170": "mvno",
    "1700": "mvno",
    "1703": "mvno",
    "171": "mvno",
    "162": "mvno",
    "165": "mvno",
    "167": "mvno",
    "145": "data_only",
    "147": "data_only",
    "149": "data_only",
    "1440": "iot",
    "146": "iot",
    "148": "iot",
}


def make_phone(raw: str, default_region: str = "CN") -> PhoneFacts:
    """A tiny stand-in for the server's parser: CN numbers only, enough for rule tests."""
    digits = "".join(ch for ch in raw if ch.isdigit())
    if raw.strip().startswith("+"):
        cc_national = digits
    elif default_region == "CN":
        cc_national = "86" + digits
    else:
        cc_national = digits
    e164 = "+" + cc_national
    if not cc_national.startswith("86"):
        return PhoneFacts(e164, False, "", "unknown", country_code=0, national_number=digits)
    national = cc_national[2:]
    prefix = next((national[:n] for n in (5, 4, 3) if national[:n] in _SEGMENTS), "")
    kind = _SEGMENTS.get(prefix, "")
    valid = len(national) == 11 and national.startswith("1") and kind not in ("iot", "")
    if kind == "data_only" and prefix == "149":
        valid = False
    return PhoneFacts(
        e164=e164,
        valid=valid,
        region="CN",
        number_type="mobile" if valid else "unknown",
        carrier="",
        segment_kind=kind,
        segment_prefix=prefix,
        country_code=86,
        national_number=national,
    )


class DictList:
    """A ListView over exact numbers (what the server's loader offers, minus prefixes)."""

    def __init__(self, entries: Mapping[str, Mapping[str, str]]) -> None:
        self._entries = dict(entries)

    def __contains__(self, e164: object) -> bool:
        return e164 in self._entries

    def labels(self, e164: str) -> Mapping[str, str] | None:
        return self._entries.get(e164)

    def __len__(self) -> int:
        return len(self._entries)


def facts(
    number: str = "+8613800000001",
    *,
    tenant: str = "t",
    phone: PhoneFacts | None = None,
    **event: object,
) -> Facts:
    return Facts(tenant, phone or make_phone(number), EventFacts(**event))  # type: ignore[arg-type]


def check_golden(path: Path, actual: str) -> None:
    """Compare with a golden file, or rewrite it under RINGFENCE_UPDATE_GOLDEN=1."""
    if UPDATE_GOLDEN or not path.exists():
        path.write_text(actual, encoding="utf-8")
        if not UPDATE_GOLDEN:
            raise AssertionError(f"golden file {path.name} was missing; wrote it - review it")
        return
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path.name} differs (RINGFENCE_UPDATE_GOLDEN=1 to accept)"
