"""Reading a list file into a ListIndex, reporting every bad line or returning nothing.

The hot path is literal E.164 lines (what vendors ship): they are checked with string
methods and turned into ints, never handed to phonenumbers; only national formats fall
back to the phone parser. See docs/lists.md for the format.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Final

from server.lists.entries import EntryError, Exact, Prefix, Range, e164_digits, parse_entry
from server.lists.index import ListIndex, RangeSpec
from server.lists.networks import (
    NetworkError,
    NetworkIndex,
    ipv4_network,
    looks_like_network,
    parse_network,
)
from server.phone import PhoneParser

ENTRY_COLUMN: Final = "entry"
EXPIRES_COLUMN: Final = "expires"
# str(ListLoadError) stops here; ``issues`` always holds every one.
_MAX_ISSUES_SHOWN: Final = 200


@dataclass(frozen=True, slots=True)
class ListIssue:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class ListLoadError(Exception):
    """A list file with at least one bad line; ``issues`` names every one."""

    def __init__(self, issues: tuple[ListIssue, ...]) -> None:
        self.issues = issues
        shown = [str(i) for i in issues[:_MAX_ISSUES_SHOWN]]
        if len(issues) > _MAX_ISSUES_SHOWN:
            shown.append(f"... and {len(issues) - _MAX_ISSUES_SHOWN} more issues")
        super().__init__("\n".join(shown))


@functools.cache
def _default_parser() -> PhoneParser:
    return PhoneParser(cache_size=0)


LoadedList = ListIndex | NetworkIndex


def load_list(
    path: str | os.PathLike[str],
    *,
    name: str,
    default_region: str = "CN",
    parser: PhoneParser | None = None,
    today: date | None = None,
) -> LoadedList:
    """Load one list file. Raises ListLoadError listing every bad line (never a partial list).

    ``default_region`` applies to entries written without a country code; entries whose
    ``expires`` date is before ``today`` (default: the local date) are skipped and counted.
    """
    where = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ListLoadError((ListIssue(where, 0, f"cannot read: {exc.strerror or exc}"),)) from None
    return parse_list(
        data, where, name=name, default_region=default_region, parser=parser, today=today
    )


def parse_list(
    data: bytes,
    where: str,
    *,
    name: str,
    default_region: str = "CN",
    parser: PhoneParser | None = None,
    today: date | None = None,
) -> LoadedList:
    """A list from bytes already read (the server reads rule folders itself, see
    :mod:`server.bundle.files`); ``where`` names it in issues."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ListLoadError((ListIssue(where, line, "not valid UTF-8"),)) from None
    return _Builder(
        where, name, default_region, parser or _default_parser(), today or date.today()
    ).build(text)


class _Builder:
    """The state of one load; a class so the per-line loop reads locals, not closures."""

    def __init__(
        self, path: str, name: str, default_region: str, parser: PhoneParser, today: date
    ) -> None:
        self.path = path
        self.name = name
        self.default_region = default_region
        self.parser = parser
        self.today = today
        self.issues: list[ListIssue] = []
        self.label_ids: dict[tuple[str, ...], int] = {}
        self.exact: dict[int, int] = {}
        self.prefixes: dict[str, int] = {}
        self.ranges: dict[tuple[int, int], RangeSpec] = {}
        self.exact_rows = self.prefix_rows = self.range_rows = 0
        self.expired_cache: dict[str, bool] = {}
        self.dates: dict[str, date] = {}  # each expires value seen, as a date
        self.skipped = 0
        # (version, network, prefix length) -> (label, line): a list of networks instead.
        self.networks: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.network_rows = 0
        self.first_number = 0  # the line of the first number, of the first network
        self.first_network = 0

    def issue(self, line: int, message: str) -> None:
        self.issues.append(ListIssue(self.path, line, message))

    def build(self, text: str) -> LoadedList:
        lines = text.split("\n")
        header, start = self._header(lines)
        if header is not None:
            self._rows(lines, start, header)
        if self.issues:
            raise ListLoadError(tuple(self.issues))
        assert header is not None  # no issues means the header was read
        columns = tuple(header[1:])
        # label_ids hands out 0, 1, 2... in insertion order, which dicts keep.
        labels: list[Mapping[str, str]] = [
            MappingProxyType(dict(zip(columns, values, strict=True))) for values in self.label_ids
        ]
        next_expiry = min((d for d in self.dates.values() if d >= self.today), default=None)
        if self.first_network:
            return NetworkIndex(
                name=self.name,
                path=self.path,
                label_columns=columns,
                labels=labels,
                networks=self.networks,
                skipped_expired=self.skipped,
                duplicates=self.network_rows - len(self.networks),
                next_expiry=next_expiry,
            )
        return ListIndex(
            name=self.name,
            path=self.path,
            label_columns=columns,
            labels=labels,
            exact=self.exact,
            prefixes=self.prefixes,
            ranges=list(self.ranges.values()),
            skipped_expired=self.skipped,
            # The last day a row is on the list: it leaves the list the day after.
            next_expiry=next_expiry,
            duplicates=(self.exact_rows - len(self.exact))
            + (self.prefix_rows - len(self.prefixes))
            + (self.range_rows - len(self.ranges)),
        )

    def _header(self, lines: list[str]) -> tuple[list[str] | None, int]:
        for i, raw in enumerate(lines):
            line = raw.strip()
            if not line or line[0] == "#":
                continue
            lineno = i + 1
            try:
                header = _split(line)
            except _LineError as exc:
                self.issue(lineno, str(exc))
                return None, 0
            if header[0] != ENTRY_COLUMN:
                self.issue(lineno, f"header must start with column {ENTRY_COLUMN!r}")
                return None, 0
            seen: set[str] = set()
            for col in header:
                if not col:
                    self.issue(lineno, "empty column name in header")
                elif col in seen:
                    self.issue(lineno, f"column {col!r} appears twice in header")
                seen.add(col)
            return (None, 0) if self.issues else (header, i + 1)
        self.issue(1, f"no header row (expected {ENTRY_COLUMN!r} and label columns)")
        return None, 0

    def _rows(self, lines: list[str], start: int, header: list[str]) -> None:
        ncols = len(header)
        expires_at = header.index(EXPIRES_COLUMN) - 1 if EXPIRES_COLUMN in header else -1
        exact, label_ids, expired_cache = self.exact, self.label_ids, self.expired_cache
        networks = self.networks
        networks_ok = True  # False once numbers came first: networks then take the slow path
        rows = network_rows = 0
        for i in range(start, len(lines)):
            line = lines[i].strip()
            if not line or line[0] == "#":
                continue
            try:
                fields = _split(line)
            except _LineError as exc:
                self.issue(i + 1, str(exc))
                continue
            if len(fields) != ncols:
                self.issue(i + 1, f"expected {ncols} columns, found {len(fields)}")
                continue
            entry = fields[0]
            values = tuple(fields[1:])
            expired = False
            if expires_at >= 0 and values[expires_at]:
                expired_or_none = expired_cache.get(values[expires_at])
                if expired_or_none is None:
                    expired_or_none = self._expired(values[expires_at])
                if expired_or_none is None:
                    self.issue(i + 1, f"bad date {values[expires_at]!r} in column 'expires'")
                    continue
                expired = expired_or_none
            digits = e164_digits(entry)
            if digits is None:
                # The other hot path: an IPv4 network (a feed of data-centre ranges).
                net = ipv4_network(entry) if networks_ok else None
                if net is None:
                    self._other(i + 1, entry, values, expired)
                    continue
                if not self.first_network:
                    self.first_network = i + 1
                    if self.first_number:
                        self._mixed(i + 1)
                        networks_ok = False
                        continue
                if expired:
                    self.skipped += 1
                    continue
                label = label_ids.get(values)
                if label is None:
                    label = label_ids[values] = len(label_ids)
                networks[net] = (label, i + 1)
                network_rows += 1
                continue
            # The hot path: literal E.164, no phonenumbers.
            if not self.first_number:
                self.first_number = i + 1
                if self.first_network:
                    self._mixed(i + 1)
                    continue
            if expired:
                self.skipped += 1
                continue
            # Interned: most entries share a handful of label tuples.
            label = label_ids.get(values)
            if label is None:
                label = label_ids[values] = len(label_ids)
            exact[int(digits)] = label
            rows += 1
        self.exact_rows += rows
        self.network_rows += network_rows

    def _label(self, values: tuple[str, ...]) -> int:
        label = self.label_ids.get(values)
        if label is None:
            label = self.label_ids[values] = len(self.label_ids)
        return label

    def _mixed(self, lineno: int) -> None:
        if self.first_network < self.first_number:
            what, first = "IP networks", self.first_network
        else:
            what, first = "phone numbers", self.first_number
        self.issue(
            lineno,
            f"a list holds phone numbers or IP networks, not both: this one holds {what}"
            f" (line {first}); put the others in a list of their own",
        )

    def _network(self, lineno: int, entry: str, values: tuple[str, ...], expired: bool) -> None:
        try:
            net = parse_network(entry)
        except NetworkError as exc:
            self.issue(lineno, str(exc))
            return
        if not self._admit(lineno, expired, network=True):
            return
        # A repeated network is an update: the later line wins (stats.duplicates).
        self.networks[(net.version, net.low, net.bits)] = (self._label(values), lineno)
        self.network_rows += 1

    def _admit(self, lineno: int, expired: bool, *, network: bool) -> bool:
        """Whether a parsed row of numbers (or networks) goes on the list: a list holds one
        kind, the first row of each kind is remembered for the message, and an expired
        row is counted and skipped."""
        if network:
            self.first_network = self.first_network or lineno
        else:
            self.first_number = self.first_number or lineno
        if self.first_number and self.first_network:
            self._mixed(lineno)
            return False
        if expired:
            self.skipped += 1
            return False
        return True

    def _other(self, lineno: int, entry: str, values: tuple[str, ...], expired: bool) -> None:
        if looks_like_network(entry):
            self._network(lineno, entry, values, expired)
            return
        try:
            parsed = parse_entry(entry, self.default_region, self.parser)
        except EntryError as exc:
            self.issue(lineno, str(exc))
            return
        if not self._admit(lineno, expired, network=False):
            return
        label = self._label(values)
        # A repeated entry is an update: the later line wins (counted in stats.duplicates).
        if isinstance(parsed, Exact):
            self.exact[parsed.number] = label
            self.exact_rows += 1
        elif isinstance(parsed, Prefix):
            self.prefixes[parsed.digits] = label
            self.prefix_rows += 1
        elif isinstance(parsed, Range):
            self.ranges[(parsed.low, parsed.high)] = RangeSpec(
                parsed.low, parsed.high, label, lineno
            )
            self.range_rows += 1

    def _expired(self, value: str) -> bool | None:
        """Whether ``value`` (ISO date) is before today; None when it is no date."""
        cached = self.expired_cache.get(value)
        if cached is not None:
            return cached
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        expired = day < self.today
        self.dates[value] = day
        self.expired_cache[value] = expired
        return expired


class _LineError(ValueError):
    """A line the CSV reader cannot split; the message says why for people."""


def _split(line: str) -> list[str]:
    if '"' in line:
        # Quoted fields are rare; csv handles "a, b" and doubled quotes.
        try:
            fields = next(csv.reader([line], skipinitialspace=True))
        except csv.Error as exc:
            raise _LineError(_csv_message(exc)) from None
        return [f.strip() for f in fields] or [""]
    fields = line.split(",")
    if " " in line or "\t" in line:
        return [f.strip() for f in fields]
    return fields


def _csv_message(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a quoted field longer than {csv.field_size_limit():,} characters"
    if "new-line character" in text:
        return "a line break (CR) inside a field: quote the field, or remove the CR"
    return f"not valid CSV ({text[:100]})"
