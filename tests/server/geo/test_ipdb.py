"""IP facts from MaxMind DB files built here: the GeoLite2 City and ASN layouts, older and
converted variants, IPv4 and IPv6, the per-network memo, reloading and bad files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from ipdb_support import (
    ASN_NETWORKS,
    CITY_NETWORKS,
    JIANGSU_CHANGZHOU,
    Place,
    names,
    write_asn_db,
    write_city_db,
    write_test_dbs,
)

from dsl.facts import NO_IP, IpFacts
from server.geo.ipdb import IpDatabaseError, IpLocator

CHANGZHOU = IpFacts(
    version=4,
    country="CN",
    province="CN-JS",
    province_name="江苏省",
    city="常州",
    city_name="常州市",
    asn=4134,
    org="CHINANET-BACKBONE",
)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_test_dbs(tmp_path_factory.mktemp("ipdb"))


@pytest.fixture
def locator(dbs: tuple[Path, Path]) -> Iterator[IpLocator]:
    loc = IpLocator.open(dbs)
    yield loc
    loc.close()


@pytest.mark.parametrize(
    ("address", "want"),
    [
        ("58.216.1.2", CHANGZHOU),
        ("::ffff:58.216.1.2", CHANGZHOU),  # IPv4-mapped: the IPv4 address
        ("240e:3b0::5", replace(CHANGZHOU, version=6)),
        (
            "8.8.8.8",
            IpFacts(4, "US", "US-CA", "California", "San Jose", "San Jose", 15169, "GOOGLE"),
        ),
        ("10.1.2.3", IpFacts(version=4)),  # an address no database knows
        ("2001:db8::1", IpFacts(version=6)),
        ("", NO_IP),
        ("not an ip", NO_IP),
        (" 58.216.1.2", NO_IP),  # caller text is not trimmed into an address
        ("058.216.1.2", NO_IP),  # leading zeros are no IPv4 address
    ],
)
def test_lookups(locator: IpLocator, address: str, want: IpFacts) -> None:
    assert locator.facts(address) == want


def test_without_databases_only_the_version_is_known() -> None:
    loc = IpLocator()
    assert loc.facts("58.216.1.2") == IpFacts(version=4)
    assert loc.facts("240e:3b0::5") == IpFacts(version=6)
    assert loc.facts("nope") == NO_IP


def test_each_field_comes_from_the_first_database_that_has_it(tmp_path: Path) -> None:
    """A City database and an ASN one: the place from one, the network from the other,
    whatever their order."""
    city, asn = write_test_dbs(tmp_path)
    for order in ((city, asn), (asn, city)):
        loc = IpLocator.open(order)
        assert loc.facts("58.216.9.9") == CHANGZHOU
        loc.close()


@pytest.mark.parametrize(
    ("record", "province", "city", "city_name"),
    [
        # GeoLite2 today: ISO subdivision codes, zh-CN names without 市.
        (JIANGSU_CHANGZHOU, "CN-JS", "常州", "常州市"),
        # Older files: the GB/T 2260 number as the subdivision code.
        (
            Place("CN", region="32", region_en="Jiangsu", city_en="Changzhou", city_zh="常州"),
            "CN-JS",
            "常州",
            "常州市",
        ),
        # English names only: the Chinese city found through the phone table.
        (
            Place("CN", region="JS", region_en="Jiangsu", city_en="Changzhou"),
            "CN-JS",
            "常州",
            "常州市",
        ),
        # Suzhou is two cities: the province tells them apart.
        (Place("CN", region="AH", region_en="Anhui", city_en="Suzhou"), "CN-AH", "宿州", "宿州市"),
        (
            Place("CN", region="JS", region_en="Jiangsu", city_en="Suzhou"),
            "CN-JS",
            "苏州",
            "苏州市",
        ),
        # A converted ip2region database: Chinese names, no codes at all.
        (Place("CN", region_zh="江苏省", city_zh="常州市"), "CN-JS", "常州", "常州市"),
        (Place("CN", region_zh="内蒙古", city_zh="锡林郭勒盟"), "CN-NM", "锡林郭勒", "锡林郭勒盟"),
    ],
    ids=["geolite2", "gb2260", "english", "suzhou-anhui", "suzhou-jiangsu", "ip2region", "league"],
)
def test_province_and_city_forms(
    tmp_path: Path, record: Place, province: str, city: str, city_name: str
) -> None:
    path = write_city_db(tmp_path / "c.mmdb", {"1.2.3.0/24": record})
    loc = IpLocator.open([path])
    got = loc.facts("1.2.3.4")
    assert (got.country, got.province, got.city, got.city_name) == ("CN", province, city, city_name)
    loc.close()


def test_a_country_named_in_chinese_only(tmp_path: Path) -> None:
    raw = {"country": {"names": names("China", "中国")}, "city": {"names": names("", "北京")}}
    loc = IpLocator.open([write_city_db(tmp_path / "c.mmdb", {"1.2.3.0/24": raw})])
    assert loc.facts("1.2.3.4").country == "CN"
    loc.close()


def test_the_network_memo_never_answers_for_a_narrower_network(tmp_path: Path) -> None:
    """A /28 inside a /16: an address in the /24 around it must not reuse the /16's answer
    for the /28, nor the /28's for the rest."""
    path = write_city_db(
        tmp_path / "c.mmdb",
        {"58.216.0.0/16": JIANGSU_CHANGZHOU, "58.216.7.16/28": CITY_NETWORKS["123.112.0.0/16"]},
    )
    loc = IpLocator.open([path])
    order = ["58.216.7.1", "58.216.7.20", "58.216.7.40", "58.216.8.1", "58.216.8.2"]
    assert [loc.facts(a).city for a in order] == ["常州", "北京", "常州", "常州", "常州"]
    assert [loc.facts(a).city for a in reversed(order)] == ["常州", "常州", "常州", "北京", "常州"]
    # 58.216.8.x shares one database lookup per database: the block is memoised.
    fresh = IpLocator.open([path])
    for i in range(1, 200):
        fresh.facts(f"58.216.8.{i}")
    assert fresh.lookups == 1
    loc.close()
    fresh.close()


def test_a_replaced_file_is_reloaded_and_a_bad_one_is_not(tmp_path: Path) -> None:
    city, asn = write_test_dbs(tmp_path)
    loc = IpLocator.open([city, asn])
    assert loc.facts("58.216.1.1").city == "常州"
    assert loc.adopt(loc.refresh()) == 0  # nothing changed
    # geoipupdate writes a new file and renames it over the old one.
    new = write_city_db(tmp_path / "city.new", {"58.216.0.0/16": CITY_NETWORKS["123.112.0.0/16"]})
    os.replace(new, city)
    assert loc.adopt(loc.refresh()) == 1
    assert loc.facts("58.216.1.1").city == "北京"
    assert loc.facts("58.216.1.1").asn == 4134  # the ASN database was kept
    # A damaged replacement: reported, and the last good file keeps answering.
    (tmp_path / "city.bad").write_bytes(b"not a database at all")
    os.replace(tmp_path / "city.bad", city)
    assert loc.adopt(loc.refresh()) == 0
    assert loc.facts("58.216.1.1").city == "北京"
    status = {s.path: s for s in loc.status()}
    assert "not a MaxMind DB" in status[str(city)].error
    assert status[str(asn)].error == ""
    # Fixed again: picked up.
    os.replace(write_city_db(tmp_path / "city.new", CITY_NETWORKS), city)
    assert loc.adopt(loc.refresh()) == 1
    assert loc.facts("58.216.1.1").city == "常州"
    assert loc.status()[0].error == ""
    loc.close()


def test_missing_and_corrupt_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(IpDatabaseError, match=r"missing\.mmdb: no such file"):
        IpLocator.open([tmp_path / "missing.mmdb"])
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(IpDatabaseError, match=r"bad\.mmdb: not a MaxMind DB \(\.mmdb\) file"):
        IpLocator.open([write_asn_db(tmp_path / "asn.mmdb", ASN_NETWORKS), bad])
