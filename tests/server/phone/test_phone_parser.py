"""PhoneParser against the formats real traffic sends, the CN segment table and junk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.phone import MAX_RAW_LENGTH, PhoneParseError, PhoneParser, SegmentTable


@pytest.fixture(scope="module")
def parser() -> PhoneParser:
    return PhoneParser(SegmentTable.load())


CN_MOBILE = "+8613800138000"


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+86 138 0013 8000", ""),
        ("+86 138 0013 8000", "CN"),
        ("+8613800138000", ""),
        ("008613800138000", ""),
        ("008613800138000", "CN"),
        ("0086 138 0013 8000", ""),
        ("8613800138000", ""),
        ("8613800138000", "CN"),
        ("138-0013-8000", "CN"),
        ("13800138000", "CN"),
        ("13800138000", "cn"),
        ("(138) 0013 8000", "CN"),
        ("１３８００１３８０００", "CN"),
        ("＋８６ １３８ ００１３ ８０００", ""),
        ("tel:+86-138-0013-8000", ""),
        ("tel:+86-138-0013-8000;ext=123", ""),
        ("TEL:+86-138-0013-8000;phone-context=example.com", ""),
        ("13800138000（微信同号）", "CN"),
        ("手机 13800138000 微信同号", "CN"),
        ("  +8613800138000\t", ""),
    ],
)
def test_cn_mobile_formats(parser: PhoneParser, raw: str, region: str) -> None:
    facts = parser.parse(raw, region)
    assert facts.e164 == CN_MOBILE
    assert facts.valid
    assert facts.region == "CN"
    assert facts.number_type == "mobile"
    assert facts.carrier == "China Mobile"
    assert (facts.segment_kind, facts.segment_prefix) == ("mobile", "138")
    assert (facts.country_code, facts.national_number) == (86, "13800138000")


@pytest.mark.parametrize(
    ("raw", "region", "e164", "country", "number_type"),
    [
        ("call me at +1 650-253-0000 pls", "", "+16502530000", "US", "fixed_line_or_mobile"),
        ("call me at +1 650-253-0000 pls", "CN", "+16502530000", "US", "fixed_line_or_mobile"),
        ("+1 650-253-0000", "", "+16502530000", "US", "fixed_line_or_mobile"),
        ("(650) 253-0000", "US", "+16502530000", "US", "fixed_line_or_mobile"),
        ("+44 20 7946 0000", "", "+442079460000", "GB", "fixed_line"),
        ("020 7946 0000", "GB", "+442079460000", "GB", "fixed_line"),
        ("+44 7400 123456", "", "+447400123456", "GB", "mobile"),
        ("+81 3-1234-5678", "", "+81312345678", "JP", "fixed_line"),
        ("+81 90-1234-5678", "", "+819012345678", "JP", "mobile"),
        ("+39 02 1234 5678", "", "+390212345678", "IT", "fixed_line"),
        ("+852 6123 4567", "", "+85261234567", "HK", "mobile"),
        ("+86 10 6552 9988", "", "+861065529988", "CN", "fixed_line"),
    ],
)
def test_international_numbers(
    parser: PhoneParser, raw: str, region: str, e164: str, country: str, number_type: str
) -> None:
    facts = parser.parse(raw, region)
    assert (facts.e164, facts.valid, facts.region, facts.number_type) == (
        e164,
        True,
        country,
        number_type,
    )
    assert facts.segment_kind == ""
    assert facts.segment_prefix == ""
    assert facts.e164 == f"+{facts.country_code}{facts.national_number}"


def test_carrier_outside_the_segment_table_comes_from_phonenumbers(parser: PhoneParser) -> None:
    # A UK mobile: phonenumbers' carrier data, in English; no CN segment.
    facts = parser.parse("+447400123456")
    assert facts.number_type == "mobile"
    assert facts.carrier != ""
    assert facts.segment_kind == ""
    # A fixed line has no carrier.
    assert parser.parse("+442079460000").carrier == ""


# One number per kind in the table, with the host operator the table names.
@pytest.mark.parametrize(
    ("e164", "kind", "prefix", "carrier", "valid"),
    [
        ("+8613912345678", "mobile", "139", "China Mobile", True),
        ("+8613012345678", "mobile", "130", "China Unicom", True),
        ("+8619212345678", "mobile", "192", "China Broadnet", True),
        ("+8617031234567", "mvno", "1703", "China Mobile", True),
        ("+8617001234567", "mvno", "1700", "China Telecom", True),
        ("+8617112345678", "mvno", "171", "China Unicom", True),
        ("+8616212345678", "mvno", "162", "China Telecom", True),
        ("+8616512345678", "mvno", "165", "China Mobile", True),
        ("+8616712345678", "mvno", "167", "China Unicom", True),
        ("+8614512345678", "data_only", "145", "China Unicom", True),
        ("+8614712345678", "data_only", "147", "China Mobile", True),
        ("+8614912345678", "data_only", "149", "China Telecom", False),
        ("+861440123456789", "iot", "1440", "China Mobile", False),
        ("+861441123456789", "iot", "1441", "China Mobile", False),
        ("+861460123456789", "iot", "146", "China Unicom", False),
        ("+861480123456789", "iot", "148", "China Mobile", False),
        ("+861410123456789", "iot", "1410", "China Telecom", False),
        ("+8613491234567", "satellite", "1349", "China Satcom", True),
        ("+8617400123456", "satellite", "17400", "China Satcom", True),
        ("+8617491234567", "satellite", "1749", "Inmarsat", False),
        ("+8617406123456", "emergency", "17406", "MIIT", False),
        ("+8617412123456", "emergency", "17412", "MIIT", False),
    ],
)
def test_segment_kinds(
    parser: PhoneParser, e164: str, kind: str, prefix: str, carrier: str, valid: bool
) -> None:
    facts = parser.parse(e164)
    assert (facts.segment_kind, facts.segment_prefix, facts.carrier) == (kind, prefix, carrier)
    assert facts.e164 == e164
    assert facts.valid is valid
    assert facts.region == "CN"


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+861440123456789", ""),
        ("1440123456789", "CN"),
        ("861440123456789", ""),
        ("00861440123456789", ""),
        ("+86 1440 1234 56789", ""),
    ],
)
def test_iot_numbers_parse_to_e164_though_phonenumbers_calls_them_invalid(
    parser: PhoneParser, raw: str, region: str
) -> None:
    facts = parser.parse(raw, region)
    assert facts.e164 == "+861440123456789"
    assert (facts.valid, facts.segment_kind, facts.number_type) == (False, "iot", "unknown")


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+86 123", "", "+86123"),  # too short to be anything, but a number
        ("+8613800", "", "+8613800"),  # truncated mobile: no segment for a short number
        ("+8613800138000123", "", "+8613800138000123"),  # 14 digits: no 13-digit IoT kind
        ("+1 555 0100", "", "+15550100"),
        ("95588", "CN", "+8695588"),  # bank service number
        ("10086", "CN", "+8610086"),  # operator service number
    ],
)
def test_invalid_but_parsed(parser: PhoneParser, raw: str, region: str, e164: str) -> None:
    facts = parser.parse(raw, region)
    assert facts.e164 == e164
    assert facts.valid is False
    assert facts.segment_kind == ""
    assert facts.segment_prefix == ""


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "CN", "empty"),
        ("   ", "", "empty"),
        ("hello", "CN", "not a phone number"),
        ("no number here", "", "not a phone number"),
        ("微信同号", "CN", "not a phone number"),
        ("+", "", "not a phone number"),
        ("+86", "", "too short"),
        ("+999 1234 5678", "", "invalid country code"),
        ("13800138000", "", "no country code and no default_region"),
        ("138-0013-8000", "", "no country code and no default_region"),
        ("13800138000", "XX", "unknown default_region"),
        ("13800138000", "ZZ", "unknown default_region"),
        ("1" * (MAX_RAW_LENGTH + 1), "CN", "too long"),
        ("+86" + "1" * 20, "", "too long"),
        ("tel:", "", "not a phone number"),
    ],
)
def test_not_a_number(parser: PhoneParser, raw: str, region: str, reason: str) -> None:
    with pytest.raises(PhoneParseError) as info:
        parser.parse(raw, region)
    assert info.value.reason == reason
    assert str(info.value) == reason


def test_non_string_input_is_a_parse_error(parser: PhoneParser) -> None:
    with pytest.raises(PhoneParseError, match="not a string"):
        parser.parse(13800138000, "CN")  # type: ignore[arg-type]


def test_cache_counts_hits_and_misses() -> None:
    parser = PhoneParser(cache_size=2)
    assert (parser.cache_info.hits, parser.cache_info.misses) == (0, 0)
    first = parser.parse("+8613800138000")
    assert parser.parse("+8613800138000") is first
    assert (parser.cache_info.hits, parser.cache_info.misses, parser.cache_info.size) == (1, 1, 1)
    # The region is part of the key: same text, different region, another miss.
    parser.parse("13800138000", "CN")
    assert (parser.cache_info.hits, parser.cache_info.misses) == (1, 2)
    # Failures are cached too, and still raise every time.
    for _ in range(2):
        with pytest.raises(PhoneParseError):
            parser.parse("hello", "CN")
    info = parser.cache_info
    assert (info.hits, info.misses, info.size, info.maxsize) == (2, 3, 2, 2)
    parser.clear_cache()
    assert parser.cache_info.size == 0


def test_rejected_before_parsing_never_enters_the_cache() -> None:
    parser = PhoneParser()
    for raw, region in [("9" * 65, "CN"), ("13800138000", "XX")]:
        with pytest.raises(PhoneParseError):
            parser.parse(raw, region)
    assert parser.cache_info.misses == 0
    assert parser.cache_info.size == 0


def test_parse_uncached_matches_parse_and_leaves_the_cache_alone() -> None:
    parser = PhoneParser()
    assert parser.parse_uncached("138-0013-8000", "CN") == parser.parse("+8613800138000")
    assert parser.cache_info.size == 1
    with pytest.raises(PhoneParseError, match="unknown default_region"):
        parser.parse_uncached("138", "XX")


_phoneish = st.text(alphabet="0123456789+-() .tel:;=ext１２３４５６７８９０＋（）微信", max_size=30)


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(st.text(max_size=80), _phoneish), region=st.sampled_from(["", "CN", "US"]))
def test_arbitrary_text_only_ever_raises_phone_parse_error(raw: str, region: str) -> None:
    parser = PhoneParser(cache_size=0)
    try:
        facts = parser.parse(raw, region)
    except PhoneParseError:
        return
    assert facts.e164.startswith("+")
    assert facts.e164[1:].isdigit()


@settings(max_examples=400, deadline=None)
@given(
    raw=st.one_of(
        st.from_regex(r"\+?[0-9]{2,16}", fullmatch=True),
        st.from_regex(r"\+86 ?1[3-9][0-9] ?[0-9]{4} ?[0-9]{4}", fullmatch=True),
        st.from_regex(r"\+[1-9][0-9]{0,2}[ -]?0?[0-9]{4,12}", fullmatch=True),
        _phoneish,
    ),
    region=st.sampled_from(["", "CN", "US", "IT", "GB"]),
)
def test_parsing_the_e164_of_a_result_is_stable(raw: str, region: str) -> None:
    parser = PhoneParser(cache_size=0)
    try:
        facts = parser.parse(raw, region)
    except PhoneParseError:
        return
    assert parser.parse(facts.e164) == facts
    assert parser.parse(facts.e164, region) == facts
