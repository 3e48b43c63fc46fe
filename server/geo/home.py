"""A Chinese number's home location (归属地): province and city from its first digits.

The source is phonenumbers' geocoder (its ``zh`` data: ``江苏省常州市``, ``北京市``). Importing
that data costs ~100 MB and ~1.7 s in every process (it holds every country in every
language), so the mainland-China part is flattened once, by ``make home-locations``, into
``server/data/cn_home_locations.tsv.gz``: the runs of the first seven digits of the
national number that share a location (~80,000 runs), each pointing into a table of
locations in the shared codes of :mod:`server.geo.places`. Loading it takes ~50 ms and
~1 MB; a lookup is one bisect. tests/server/geo/test_home.py regenerates the table from the
installed phonenumbers and fails when the packaged copy is stale.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import sys
from array import array
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, replace
from importlib import resources
from typing import Final

from server.geo.places import city_code, provinces

DATA_FILE: Final = "cn_home_locations.tsv.gz"
DIGITS: Final = 7  # every CN prefix in phonenumbers' data is at most 7 national digits
# Number types phonenumbers gives a place for in China (mobile numbers are geographic there).
GEOGRAPHIC_TYPES: Final = frozenset({"mobile", "fixed_line", "fixed_line_or_mobile"})
_NONE: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class HomeLocation:
    province: str  # ISO 3166-2: "CN-JS"
    city: str  # short Chinese name: "常州"
    province_name: str  # "江苏省"
    city_name: str  # "常州市"
    city_en: str  # "Changzhou": how English-only IP databases name the city


class HomeLocations:
    """Longest-prefix lookup of a CN national number's home location."""

    __slots__ = ("_ids", "_starts", "locations", "source")

    def __init__(
        self, locations: tuple[HomeLocation, ...], runs: list[tuple[int, int]], source: str
    ) -> None:
        self.locations = locations
        self._starts = array("L", (start for start, _ in runs))
        self._ids = array("H", (loc for _, loc in runs))
        self.source = source

    @classmethod
    def load(cls) -> HomeLocations:
        ref = resources.files("server").joinpath("data", DATA_FILE)
        text = gzip.decompress(ref.read_bytes()).decode("utf-8")
        return cls.parse(text, f"server/data/{DATA_FILE}")

    @classmethod
    def parse(cls, text: str, source: str) -> HomeLocations:
        locations: list[HomeLocation] = []
        runs: list[tuple[int, int]] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line or line[0] == "#":
                continue
            cells = line.split("\t")
            if cells[0] == "L" and len(cells) == 7 and int(cells[1]) == len(locations):
                locations.append(HomeLocation(*cells[2:]))
            elif len(cells) == 2 and cells[0].isdigit():
                runs.append((int(cells[0]), _NONE if cells[1] == "-" else int(cells[1])))
            else:
                raise ValueError(f"{source}:{lineno}: not a location or a run")
        return cls(tuple(locations), runs, source)

    def lookup(self, national_number: str) -> HomeLocation | None:
        """The home location of a CN national significant number (``13912345678``), or
        None where phonenumbers knows only the country."""
        head = national_number[:DIGITS]
        if not head.isdigit():
            return None
        i = bisect_right(self._starts, int(head.ljust(DIGITS, "0"))) - 1
        if i < 0:
            return None
        loc = self._ids[i]
        return None if loc == _NONE else self.locations[loc]


@functools.cache
def home_locations() -> HomeLocations:
    return HomeLocations.load()


# -- building the table from phonenumbers' data (make home-locations) ----------------------


def build_text() -> str:
    """The table's text, from the installed phonenumbers (imports its whole geocoder data)."""
    import phonenumbers
    from phonenumbers.geodata import GEOCODE_DATA

    table = provinces()
    prefixes: dict[str, HomeLocation] = {}
    for key, names in GEOCODE_DATA.items():
        if not key.startswith("86"):
            continue
        found = _location(names.get("zh", ""), names.get("en", ""), table)
        if found is not None:
            prefixes[key[2:]] = found
    assert max(len(p) for p in prefixes) <= DIGITS, "phonenumbers' CN prefixes grew"
    # One display name per city: the most common spelling (乌兰察布市 over 乌兰察布).
    spellings = Counter((h.province, h.city, h.city_name) for h in prefixes.values())
    best: dict[tuple[str, str], str] = {}
    for (province, city, name), _ in spellings.most_common():
        best.setdefault((province, city), name)
    prefixes = {p: replace(h, city_name=best[(h.province, h.city)]) for p, h in prefixes.items()}
    locations = sorted(set(prefixes.values()), key=_cells)
    index = {loc: i for i, loc in enumerate(locations)}
    # Every boundary where a prefix's span begins or ends; at each, the longest prefix of
    # the point decides (a prefix covers [p * 10^(7-len), (p + 1) * 10^(7-len))).
    bounds: set[int] = set()
    for p in prefixes:
        scale = 10 ** (DIGITS - len(p))
        bounds.update((int(p) * scale, (int(p) + 1) * scale))
    lines = [
        f"# China (+86) home locations from phonenumbers {phonenumbers.__version__} geocoding"
        " data (libphonenumber, Apache-2.0)",
        "# written by `make home-locations` (server/geo/home.py): do not edit",
        "# L\tid\tprovince\tcity\tprovince name\tcity name\tcity (English)",
    ]
    lines += [f"L\t{i}\t" + "\t".join(_cells(loc)) for i, loc in enumerate(locations)]
    lines.append(f"# first {DIGITS} digits of the national number where a run starts\tlocation")
    last: object = None
    for point in sorted(bounds):
        digits = str(point).zfill(DIGITS)
        heads = (digits[:n] for n in range(DIGITS, 0, -1))
        loc = next((prefixes[h] for h in heads if h in prefixes), None)
        if loc == last:
            continue
        last = loc
        lines.append(f"{point}\t{'-' if loc is None else index[loc]}")
    return "\n".join(lines) + "\n"


def _cells(loc: HomeLocation) -> tuple[str, ...]:
    return (loc.province, loc.city, loc.province_name, loc.city_name, loc.city_en)


def _location(zh: str, en: str, table: object) -> HomeLocation | None:
    from server.geo.places import Provinces

    assert isinstance(table, Provinces)
    split = table.split(zh)
    if split is None:
        return None
    province, rest = split
    # "西藏日喀则地区、仲巴县": the prefecture, then counties it also covers.
    city_name = rest.split("、", 1)[0] or province.name_zh
    city = city_code(city_name) if rest else province.short_zh
    return HomeLocation(province.code, city, province.name_zh, city_name, en.split(",", 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the CN home-location table from phonenumbers")
    ap.add_argument("out", help=f"where to write it (server/data/{DATA_FILE})")
    args = ap.parse_args(argv)
    data = gzip.compress(build_text().encode("utf-8"), compresslevel=9, mtime=0)
    with open(args.out, "wb") as fh:
        fh.write(data)
    print(f"{args.out}: {len(data)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
