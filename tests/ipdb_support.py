"""Test IP databases: .mmdb files in the GeoLite2 City and ASN layouts, written here with
mmdb-writer so no test downloads anything."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPNetwork, IPSet

# GeoLite2's languages: every name comes in all of them, which is what lookups decode.
LANGUAGES = ("de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN")


def names(en: str, zh: str = "") -> dict[str, str]:
    """A name in every language; no zh-CN entry without a Chinese name, no others without
    an English one (as in converted data)."""
    out = {lang: en for lang in LANGUAGES if lang != "zh-CN" and en}
    if zh:
        out["zh-CN"] = zh
    return out


@dataclass(frozen=True)
class Place:
    """A network's location as GeoLite2 City writes it."""

    country: str  # ISO code: "CN"
    country_en: str = "China"
    country_zh: str = "中国"
    region: str = ""  # subdivision iso_code: "JS" (or "32" in older files, or "")
    region_en: str = ""
    region_zh: str = ""
    city_en: str = ""
    city_zh: str = ""


JIANGSU_CHANGZHOU = Place("CN", region="JS", region_en="Jiangsu", region_zh="江苏省",
                          city_en="Changzhou", city_zh="常州")  # fmt: skip
BEIJING = Place("CN", region="BJ", region_en="Beijing", region_zh="北京市",
                city_en="Beijing", city_zh="北京")  # fmt: skip
GUANGDONG_SHENZHEN = Place("CN", region="GD", region_en="Guangdong", region_zh="广东省",
                           city_en="Shenzhen", city_zh="深圳")  # fmt: skip
CALIFORNIA = Place("US", "United States", "美国", "CA", "California", "加利福尼亚州",
                   "San Jose", "圣何塞")  # fmt: skip


def city_record(place: Place) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "continent": {"code": "AS", "geoname_id": MmdbU32(6255147), "names": names("Asia", "亚洲")},
        "country": {
            "geoname_id": MmdbU32(1814991),
            "iso_code": place.country,
            "names": names(place.country_en, place.country_zh),
        },
        "registered_country": {
            "geoname_id": MmdbU32(1814991),
            "iso_code": place.country,
            "names": names(place.country_en, place.country_zh),
        },
        "location": {
            "accuracy_radius": 50,
            "latitude": 31.7,
            "longitude": 119.9,
            "time_zone": "Asia/Shanghai",
        },
    }
    if place.region or place.region_en or place.region_zh:
        sub: dict[str, Any] = {"geoname_id": MmdbU32(1806260)}
        if place.region:
            sub["iso_code"] = place.region
        sub["names"] = names(place.region_en, place.region_zh)
        rec["subdivisions"] = [sub]
    if place.city_en or place.city_zh:
        rec["city"] = {
            "geoname_id": MmdbU32(1815463),
            "names": names(place.city_en, place.city_zh),
        }
    return rec


def _writer(kind: str, languages: Sequence[str]) -> MMDBWriter:
    return MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=kind,
        languages=list(languages),
        description=f"{kind} (test)",
    )


def write_city_db(
    path: Path,
    networks: Mapping[str, Place | Mapping[str, Any]],
    kind: str = "GeoLite2-City",
) -> Path:
    """``networks``: CIDR -> a Place (or a raw record). Later, narrower networks win inside
    wider ones, as in MaxMind's files."""
    w = _writer(kind, LANGUAGES)
    for cidr, place in sorted(networks.items(), key=lambda kv: IPNetwork(kv[0]).prefixlen):
        rec = city_record(place) if isinstance(place, Place) else dict(place)
        w.insert_network(IPSet([IPNetwork(cidr)]), rec)
    w.to_db_file(str(path))
    return path


def write_asn_db(path: Path, networks: Mapping[str, tuple[int, str]]) -> Path:
    """``networks``: CIDR -> (AS number, organisation), the GeoLite2-ASN layout."""
    w = _writer("GeoLite2-ASN", ("en",))
    for cidr, (number, org) in sorted(networks.items(), key=lambda kv: IPNetwork(kv[0]).prefixlen):
        w.insert_network(
            IPSet([IPNetwork(cidr)]),
            {"autonomous_system_number": MmdbU32(number), "autonomous_system_organization": org},
        )
    w.to_db_file(str(path))
    return path


# The two databases most tests use: Changzhou telecom, a Beijing block, a data centre in
# Shenzhen, an IPv6 block in Jiangsu, and an American network.
CITY_NETWORKS: dict[str, Place] = {
    "58.216.0.0/16": JIANGSU_CHANGZHOU,
    "123.112.0.0/16": BEIJING,
    "119.29.0.0/16": GUANGDONG_SHENZHEN,
    "240e:3b0::/32": JIANGSU_CHANGZHOU,
    "8.8.8.0/24": CALIFORNIA,
}
ASN_NETWORKS: dict[str, tuple[int, str]] = {
    "58.216.0.0/16": (4134, "CHINANET-BACKBONE"),
    "123.112.0.0/16": (4808, "China Unicom Beijing Province Network"),
    "119.29.0.0/16": (45090, "Shenzhen Tencent Computer Systems Company Limited"),
    "240e:3b0::/32": (4134, "CHINANET-BACKBONE"),
    "8.8.8.0/24": (15169, "GOOGLE"),
}


def write_test_dbs(directory: Path) -> tuple[Path, Path]:
    """city.mmdb and asn.mmdb in ``directory``."""
    return (
        write_city_db(directory / "city.mmdb", CITY_NETWORKS),
        write_asn_db(directory / "asn.mmdb", ASN_NETWORKS),
    )
