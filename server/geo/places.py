"""Province and city codes that a number's home location and an IP's location share.

A policy compares ``phone.province`` with ``ip.province``, so both sides speak one form:

* **province**: ISO 3166-2 (``CN-JS``), whatever the source wrote (phonenumbers' ``江苏省``,
  GeoLite2's subdivision code ``JS``, an older database's GB/T 2260 ``32``, a converted
  ip2region database's ``江苏`` or ``Jiangsu``);
* **city** (in China): the short Chinese name, without the administrative suffix
  (``常州市`` -> ``常州``, ``凉山彝族自治州`` -> ``凉山``, ``海东地区`` -> ``海东``);
  :func:`city_code` is the one normalisation both sides go through.

docs/dsl.md ("Where a number lives, where a request comes from") documents the forms.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Province:
    code: str  # ISO 3166-2: "CN-JS"
    name_zh: str  # "江苏省"
    name_en: str  # "Jiangsu"
    short_zh: str  # "江苏"


@dataclass(frozen=True, slots=True)
class Provinces:
    """The province table and every name or code a source may use for a province."""

    by_code: Mapping[str, Province]
    # "JS", "32", "江苏省", "江苏", "jiangsu" -> the province (CN only)
    by_alias: Mapping[str, Province]
    # Full names and short names, longest first: what a description starts with.
    prefixes: tuple[tuple[str, Province], ...]

    def find(self, text: str) -> Province | None:
        """The province a code or a name stands for (``JS``, ``CN-JS``, ``32``, ``江苏省``,
        ``江苏``, ``Jiangsu``), or None."""
        key = text.strip()
        found = self.by_code.get(key.upper())
        if found is not None:
            return found
        return self.by_alias.get(key.lower())

    def split(self, description: str) -> tuple[Province, str] | None:
        """``江苏省常州市`` -> (Jiangsu, ``常州市``); ``北京市`` -> (Beijing, ``""``)."""
        for prefix, province in self.prefixes:
            if description.startswith(prefix):
                return province, description[len(prefix) :]
        return None


@functools.cache
def provinces() -> Provinces:
    ref = resources.files("server").joinpath("data", "cn_provinces.csv")
    text = ref.read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO("".join(ln for ln in text.splitlines(True) if ln[:1] != "#")))
    by_code: dict[str, Province] = {}
    by_alias: dict[str, Province] = {}
    for row in rows:
        p = Province(row["iso_3166_2"], row["name_zh"], row["name_en"], row["zh_short"])
        by_code[p.code] = p
        for alias in (p.code[3:], row["gb2260"], p.name_zh, p.short_zh, p.name_en.lower()):
            by_alias[alias.lower()] = p
    prefixes = sorted(
        ((name, p) for p in by_code.values() for name in (p.name_zh, p.short_zh)),
        key=lambda item: -len(item[0]),
    )
    return Provinces(MappingProxyType(by_code), MappingProxyType(by_alias), tuple(prefixes))


# Peoples named in the names of autonomous prefectures (凉山彝族自治州): dropped with
# 自治州 so the short name is the one people use (凉山).
_PEOPLES = tuple(
    sorted(
        (
            *("彝族", "蒙古族", "藏族", "哈尼族", "朝鲜族", "回族", "白族", "苗族", "侗族"),
            *("布依族", "土家族", "壮族", "傈僳族", "傣族", "景颇族", "羌族", "土族"),
            *("撒拉族", "纳西族", "瑶族", "黎族", "哈萨克", "蒙古", "柯尔克孜", "维吾尔"),
        ),
        key=len,
        reverse=True,
    )
)
_SUFFIXES = ("地区", "林区", "市", "盟")


def city_code(name: str) -> str:
    """A Chinese city's short name: ``常州市`` -> ``常州``, ``凉山彝族自治州`` -> ``凉山``,
    ``大兴安岭地区`` -> ``大兴安岭``, ``兴安盟`` -> ``兴安``; a name without a suffix as it is.
    A suffix is kept when dropping it would leave a single character."""
    text = name.strip()
    if text.endswith("自治州"):
        text = text[: -len("自治州")]
        stripped = True
        while stripped:
            stripped = False
            for people in _PEOPLES:
                if text.endswith(people) and len(text) > len(people) + 1:
                    text = text[: -len(people)]
                    stripped = True
                    break
        return text
    for suffix in _SUFFIXES:
        if text.endswith(suffix) and len(text) - len(suffix) >= 2:
            return text[: -len(suffix)]
    return text
