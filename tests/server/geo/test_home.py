"""A Chinese number's home location: known prefixes, agreement with phonenumbers' own
geocoder, and the packaged table being the one the installed phonenumbers gives."""

from __future__ import annotations

import gzip
import random
from importlib import resources

import phonenumbers
import pytest
from phonenumbers import geocoder

from server.geo.home import DATA_FILE, GEOGRAPHIC_TYPES, build_text, home_locations
from server.geo.places import city_code, provinces
from server.phone import PhoneParser


@pytest.fixture(scope="module")
def parser() -> PhoneParser:
    return PhoneParser()


# number -> province, city, province name, city name
KNOWN = {
    "+8613912345678": ("CN-JS", "常州", "江苏省", "常州市"),  # mobile 1391234
    "+8651912345678": ("CN-JS", "常州", "江苏省", "常州市"),  # fixed line, area code 519
    "+8613800138000": ("CN-BJ", "北京", "北京市", "北京市"),  # a municipality: its own city
    "+862112345678": ("CN-SH", "上海", "上海市", "上海市"),
    "+8613512345678": ("CN-CQ", "重庆", "重庆市", "重庆市"),
    "+8615900000000": ("CN-GD", "中山", "广东省", "中山市"),
    "+8618908900000": ("CN-XZ", "拉萨", "西藏自治区", "拉萨市"),
    "+868341234567": ("CN-SC", "凉山", "四川省", "凉山彝族自治州"),
    "+864791234567": ("CN-NM", "锡林郭勒", "内蒙古自治区", "锡林郭勒盟"),
    "+8617000000001": ("CN-BJ", "北京", "北京市", "北京市"),  # an MVNO block with a place
    "+8617030000001": ("", "", "", ""),  # an MVNO block phonenumbers places only in China
    "+8616212345678": ("", "", "", ""),
    "+8640012345678": ("", "", "", ""),  # not valid: no place, as phonenumbers
    "+85291234567": ("", "", "", ""),  # Hong Kong: not a +86 number
    "+14155550100": ("", "", "", ""),
}


@pytest.mark.parametrize(("number", "want"), KNOWN.items())
def test_known_prefixes(parser: PhoneParser, number: str, want: tuple[str, ...]) -> None:
    p = parser.parse(number)
    assert (p.province, p.city, p.province_name, p.city_name) == want


def _from_phonenumbers(number: str) -> tuple[str, str]:
    """Province and city as phonenumbers' own geocoder describes the number, in our codes."""
    parsed = phonenumbers.parse(number)
    text = geocoder.description_for_number(parsed, "zh")
    split = provinces().split(text)
    if split is None:
        return "", ""
    province, rest = split
    return province.code, city_code(rest.split("、", 1)[0]) if rest else province.short_zh


def test_agrees_with_the_geocoder_on_random_numbers(parser: PhoneParser) -> None:
    """Every valid geographic number of a random sample over the whole +86 space places
    where phonenumbers' geocoder places it."""
    rng = random.Random(24)
    checked = 0
    for _ in range(20_000):
        nsn = str(rng.choice((1, 2, 3, 4, 5, 7, 8, 9))) + "".join(
            rng.choice("0123456789") for _ in range(rng.choice((9, 10)))
        )
        p = parser.parse_uncached("+86" + nsn)
        if not p.valid or p.number_type not in GEOGRAPHIC_TYPES:
            continue
        checked += 1
        assert (p.province, p.city) == _from_phonenumbers(p.e164), p.e164
    assert checked > 3000


def test_every_location_has_iso_codes_and_names() -> None:
    codes = set(provinces().by_code)
    for loc in home_locations().locations:
        assert loc.province in codes
        assert all((loc.city, loc.city_name, loc.province_name))


def test_packaged_table_is_current() -> None:
    """After a phonenumbers upgrade: `make home-locations`, then commit the table."""
    ref = resources.files("server").joinpath("data", DATA_FILE)
    packaged = gzip.decompress(ref.read_bytes()).decode("utf-8")
    assert packaged == build_text(), "stale: run `make home-locations`"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("常州市", "常州"),
        ("北京", "北京"),
        ("凉山彝族自治州", "凉山"),
        ("海西蒙古族藏族自治州", "海西"),
        ("巴音郭楞蒙古自治州", "巴音郭楞"),
        ("伊犁哈萨克自治州", "伊犁"),
        ("黔东南苗族侗族自治州", "黔东南"),
        ("大兴安岭地区", "大兴安岭"),
        ("神农架林区", "神农架"),
        ("兴安盟", "兴安"),
        (" 苏州市 ", "苏州"),
        ("津市", "津市"),  # one character would be left: kept whole
    ],
)
def test_city_codes(name: str, code: str) -> None:
    assert city_code(name) == code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("CN-JS", "CN-JS"),
        ("JS", "CN-JS"),
        ("js", "CN-JS"),
        ("32", "CN-JS"),
        ("江苏省", "CN-JS"),
        ("江苏", "CN-JS"),
        ("Jiangsu", "CN-JS"),
        ("内蒙古", "CN-NM"),
        ("Inner Mongolia", "CN-NM"),
        ("广西壮族自治区", "CN-GX"),
        ("Atlantis", None),
    ],
)
def test_province_aliases(text: str, code: str | None) -> None:
    found = provinces().find(text)
    assert (found.code if found else None) == code
