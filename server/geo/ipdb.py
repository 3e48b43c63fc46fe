"""IP facts (``ip.country``, ``ip.province``, ``ip.asn``, ...) from the operator's databases.

The databases are MaxMind DB files (``.mmdb``) read with maxminddb's C extension: GeoLite2
or GeoIP2 City / Country and ASN, or any other data converted to those layouts (ip2region
and IPIP data converted to mmdb usually carry Chinese names and no codes; the province is
then found by name). The operator names them (``ringfence serve --ip-db PATH``, repeatable);
a tenant's folder never can (docs/security.md). Each field comes from the first database,
in the order given, that has it: a City and an ASN database together give every fact.

Cost: decoding a City record builds every name in every language (~3-8 µs), so answers are
remembered, per address text and per network: when every database says the address sits
in a network at least as wide as its /24 (IPv4) or /64 (IPv6), the answer holds for that
whole block and the next address in it costs a dict lookup. ``bench/ip_facts.py`` measures
it. When a file changes (a weekly geoipupdate), :meth:`IpLocator.refresh` opens the new one
beside the old and swaps; a new file that does not open is reported and the old one stays.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from dsl.addresses import parse_ip
from dsl.facts import NO_IP, IpFacts
from server.geo.home import home_locations
from server.geo.places import Province, city_code, provinces

log = logging.getLogger("ringfence.ipdb")

CACHE_SIZE: Final = 65_536
# Networks at least this wide answer for every address of the block around an address.
_BLOCK_BITS: Final = {4: 24, 6: 64}
_V4: Final = IpFacts(version=4)
_V6: Final = IpFacts(version=6)
_CHINA_NAMES: Final = frozenset({"中国", "china", "中华人民共和国"})


class IpDatabaseError(Exception):
    """A database that cannot be used: missing, unreadable, or not a MaxMind DB file."""


@dataclass(frozen=True, slots=True)
class _Signature:
    """What tells a replaced file: a rename gives a new inode, a rewrite a new size or time."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _Signature:
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(slots=True)
class IpDatabase:
    """One open database file."""

    path: Path
    reader: Any  # maxminddb.extension.Reader (no stubs for the C type's methods)
    signature: _Signature
    database_type: str
    build_epoch: int
    loaded_at: float
    error: str = ""  # why the last attempt to open a newer file failed ("" when it did not)

    @classmethod
    def open(cls, path: Path) -> IpDatabase:
        try:
            signature = _Signature.of(path)
            reader = maxminddb.open_database(os.fspath(path), maxminddb.MODE_MMAP_EXT)
        except FileNotFoundError:
            raise IpDatabaseError(f"{path}: no such file") from None
        except (InvalidDatabaseError, ValueError) as exc:
            raise IpDatabaseError(f"{path}: not a MaxMind DB (.mmdb) file ({exc})") from None
        except OSError as exc:
            raise IpDatabaseError(f"{path}: cannot read: {exc.strerror or exc}") from None
        meta = reader.metadata()
        return cls(
            path, reader, signature, str(meta.database_type), int(meta.build_epoch), time.time()
        )

    def close(self) -> None:
        self.reader.close()


@dataclass(frozen=True, slots=True)
class IpDatabaseStatus:
    path: str
    database_type: str
    build_epoch: int
    loaded_at: float
    error: str


@dataclass
class IpLocator:
    """The configured databases and the answers they gave. Lookups run on one thread (the
    event loop, or a tool's); :meth:`refresh` opens files on any thread and the caller
    swaps by calling :meth:`adopt` where lookups run."""

    databases: tuple[IpDatabase, ...] = ()
    cache_size: int = CACHE_SIZE
    lookups: int = 0  # database lookups made (cache misses)
    errors: int = 0  # lookups a database failed (a damaged file): that field is unknown
    _by_text: dict[str, IpFacts] = field(default_factory=dict, repr=False)
    _by_block: dict[int, IpFacts] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, paths: Sequence[str | os.PathLike[str]]) -> IpLocator:
        """Open every database; raises IpDatabaseError naming the first that cannot be."""
        opened: list[IpDatabase] = []
        try:
            for p in paths:
                opened.append(IpDatabase.open(Path(p)))
        except IpDatabaseError:
            for db in opened:
                db.close()
            raise
        return cls(tuple(opened))

    @property
    def configured(self) -> bool:
        return bool(self.databases)

    def facts(self, text: str) -> IpFacts:
        """Where ``text`` (``event.ip``) is; :data:`NO_IP` when it is no address."""
        found = self._by_text.get(text)
        if found is not None:
            return found
        found = self._lookup(text)
        if len(self._by_text) >= self.cache_size:
            self._by_text.clear()
        self._by_text[text] = found
        return found

    def _lookup(self, text: str) -> IpFacts:
        parsed = parse_ip(text)
        if parsed is None:
            return NO_IP
        version, value = parsed
        if not self.databases:
            return _V4 if version == 4 else _V6
        # One int per block: the /24's 24 bits, or the /64's 64 bits above a marker bit.
        block = value >> 8 if version == 4 else value >> 64 | 1 << 64
        found = self._by_block.get(block)
        if found is not None:
            return found
        # An IPv4 address written as IPv4-mapped IPv6 is looked up as the IPv4 address.
        address = text if (version == 6) == (":" in text) else str(ipaddress.IPv4Address(value))
        merged: dict[str, Any] = {}
        wide = True
        for db in self.databases:
            self.lookups += 1
            try:
                record, prefix_len = db.reader.get_with_prefix_len(address)
            except (InvalidDatabaseError, ValueError, OSError):
                self.errors += 1
                wide = False
                continue
            wide = wide and prefix_len <= _BLOCK_BITS[version]
            if isinstance(record, dict):
                for key, value_ in extract(record).items():
                    if value_ and not merged.get(key):
                        merged[key] = value_
        found = IpFacts(version=version, **merged)
        if wide:
            if len(self._by_block) >= self.cache_size:
                self._by_block.clear()
            self._by_block[block] = found
        return found

    def forget(self) -> None:
        """Drop every remembered answer (the databases changed)."""
        self._by_text = {}
        self._by_block = {}

    # -- reloading -------------------------------------------------------------------------

    def refresh(self) -> tuple[IpDatabase | None, ...]:
        """For each database, a newly opened replacement when its file changed (None when
        it did not, or when the new file cannot be opened: the old one stays, and its
        ``error`` says why). Opens files only: :meth:`adopt` swaps."""
        out: list[IpDatabase | None] = []
        for db in self.databases:
            try:
                changed = _Signature.of(db.path) != db.signature
            except OSError as exc:
                # Mid-replacement (removed, not yet renamed in): keep serving the old one.
                db.error = f"cannot read: {exc.strerror or exc}"
                out.append(None)
                continue
            if not changed:
                out.append(None)
                continue
            try:
                out.append(IpDatabase.open(db.path))
                db.error = ""
            except IpDatabaseError as exc:
                if str(exc) != db.error:
                    log.error(
                        "IP database not reloaded; the previous one stays",
                        extra={"error": str(exc)},
                    )
                db.error = str(exc)
                # Not asked again until the file changes once more.
                db.signature = _Signature.of(db.path) if db.path.exists() else db.signature
                out.append(None)
        return tuple(out)

    def adopt(self, fresh: Sequence[IpDatabase | None]) -> int:
        """Swap in what :meth:`refresh` opened; returns how many databases changed."""
        if not any(fresh):
            return 0
        old = self.databases
        self.databases = tuple(new or db for db, new in zip(old, fresh, strict=True))
        self.forget()
        for db, new in zip(old, fresh, strict=True):
            if new is not None:
                log.info(
                    "IP database reloaded",
                    extra={
                        "path": str(new.path),
                        "type": new.database_type,
                        "build": new.build_epoch,
                    },
                )
                db.close()
        return sum(1 for new in fresh if new is not None)

    async def watch(self, interval_s: float) -> None:
        """Reload changed files every ``interval_s`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                fresh = await asyncio.to_thread(self.refresh)
            except Exception:  # a bug here must not end the watch
                log.exception("IP database check failed")
                continue
            self.adopt(fresh)

    def status(self) -> tuple[IpDatabaseStatus, ...]:
        return tuple(
            IpDatabaseStatus(str(db.path), db.database_type, db.build_epoch, db.loaded_at, db.error)
            for db in self.databases
        )

    def close(self) -> None:
        for db in self.databases:
            db.close()
        self.databases = ()


# -- what a record says ---------------------------------------------------------------------
# Records come from the C reader as plain dicts and lists: checked with isinstance(x, dict)
# (a C fast path), not against the Mapping ABC, which costs as much as the lookup itself.


def _names(node: object) -> dict[str, str]:
    if isinstance(node, dict):
        names = node.get("names")
        if isinstance(names, dict):
            return names
    return _NO_NAMES


_NO_NAMES: dict[str, str] = {}


def _zh(names: dict[str, str]) -> str:
    return str(names.get("zh-CN") or names.get("zh") or "")


def _code(node: object) -> str:
    if isinstance(node, dict):
        code = node.get("iso_code")
        if isinstance(code, str):
            return code.strip().upper()
    return ""


def extract(record: Mapping[str, Any]) -> dict[str, Any]:
    """The IpFacts fields a GeoLite2/GeoIP2 City, Country or ASN record (or an ISP or
    Enterprise one, or a converted ip2region/IPIP one) gives; absent fields are left out."""
    out: dict[str, Any] = {}
    get = record.get
    country_node = get("country") or get("registered_country")
    province: Province | None = None
    if country_node is not None:
        country = _code(country_node)
        if not country:
            names = _names(country_node)
            name = _zh(names) or str(names.get("en", ""))
            if name.strip().lower() in _CHINA_NAMES:
                country = "CN"
        if country:
            out["country"] = country
        subdivisions = get("subdivisions")
        if isinstance(subdivisions, list) and subdivisions:
            province = _province(out, country, subdivisions[0])
        city_names = _names(get("city"))
        if city_names:
            out.update(_city(country, province, city_names))
    asn = get("autonomous_system_number")
    org = get("autonomous_system_organization")
    traits = get("traits")
    if isinstance(traits, dict):
        asn = asn or traits.get("autonomous_system_number")
        org = org or traits.get("autonomous_system_organization")
    if isinstance(asn, int) and asn > 0:
        out["asn"] = asn
    if isinstance(org, str) and org:
        out["org"] = org
    return out


def _province(out: dict[str, Any], country: str, region: object) -> Province | None:
    code, names = _code(region), _names(region)
    if country == "CN":
        table = provinces()
        candidates = (code, _zh(names), str(names.get("en", "")))
        found = next((p for t in candidates if t and (p := table.find(t))), None)
        if found is not None:
            out["province"] = found.code
            out["province_name"] = found.name_zh
        return found
    if code and country:
        out["province"] = f"{country}-{code}"
        out["province_name"] = str(names.get("en", "")) or _zh(names)
    return None


def _city(country: str, province: Province | None, names: dict[str, str]) -> dict[str, str]:
    zh, en = _zh(names), str(names.get("en", ""))
    if country != "CN":
        return {"city": en or zh, "city_name": en or zh}
    cities = _cities()
    if zh:
        code = city_code(zh)
        full = cities.get((province.code, code)) if province is not None else None
        return {"city": code, "city_name": full[1] if full else zh}
    if province is not None and en:
        # English only (GeoLite2 without zh-CN, some converted data): the Chinese name from
        # the phone table, by province, so ip.city compares with phone.city.
        found = cities.get((province.code, en.strip().lower()))
        if found is not None:
            return {"city": found[0], "city_name": found[1]}
    return {"city": en, "city_name": en}


_CITIES: dict[tuple[str, str], tuple[str, str]] = {}


def _cities() -> Mapping[tuple[str, str], tuple[str, str]]:
    """(province, short name or English name in lower case) -> (short name, full name),
    from the phone home-location table: the names ip.city and phone.city share."""
    if not _CITIES:
        for loc in home_locations().locations:
            entry = (loc.city, loc.city_name)
            _CITIES.setdefault((loc.province, loc.city), entry)
            for en in loc.city_en.split("/"):
                _CITIES.setdefault((loc.province, en.strip().lower()), entry)
    return _CITIES
