"""The mainland-China number-segment table: which prefix is what kind of line, on whose network.

phonenumbers calls every CN mobile segment MOBILE and has no notion of MVNO, data-only or
IoT numbers, so this table is what tells a "black card" segment from an ordinary one. The
allocation plan changes a few times a year, hence data (a CSV the service loads and a
deployment may override), never code.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

SEGMENT_KINDS = frozenset({"mobile", "mvno", "data_only", "iot", "satellite", "emergency"})
_REQUIRED_COLUMNS = ("prefix", "kind", "host_operator")
_MAX_PREFIX_LENGTH = 13  # the longest CN national number (IoT) - a longer prefix can never match


@dataclass(frozen=True, slots=True)
class Segment:
    prefix: str
    kind: str
    host_operator: str


class SegmentTable:
    """Longest-prefix lookup over CN national numbers (``"13800138000"``, no ``+86``)."""

    __slots__ = ("_by_prefix", "_lengths", "source")

    def __init__(self, segments: Iterable[Segment], source: str = "<memory>") -> None:
        by_prefix: dict[str, Segment] = {}
        for seg in segments:
            if seg.prefix in by_prefix:
                raise ValueError(f"{source}: duplicate prefix {seg.prefix!r}")
            by_prefix[seg.prefix] = seg
        self._by_prefix: Mapping[str, Segment] = MappingProxyType(by_prefix)
        # Longest first, so the first hit is the most specific (1703 before 170).
        self._lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> SegmentTable:
        """Read a table; ``None`` reads the copy packaged with the service.

        Raises ValueError naming ``file:line`` and the reason for every bad row.
        """
        if path is None:
            ref = resources.files("server").joinpath("data", "cn_segments.csv")
            return cls._parse(ref.read_text(encoding="utf-8"), "server/data/cn_segments.csv")
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                text = fh.read()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{os.fspath(path)}: not valid UTF-8 ({exc.reason})") from None
        return cls._parse(text, os.fspath(path))

    @classmethod
    def _parse(cls, text: str, source: str) -> SegmentTable:
        reader = csv.reader(io.StringIO(text))
        header: list[str] | None = None
        errors: list[str] = []
        segments: dict[str, Segment] = {}
        first_line: dict[str, int] = {}
        for row in _rows(reader, source, errors):
            line = reader.line_num
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in row]
            if header is None:
                header = cells
                missing = [c for c in _REQUIRED_COLUMNS if c not in header]
                if missing:
                    errors.append(f"{source}:{line}: header lacks column(s) {', '.join(missing)}")
                    break
                continue
            if len(cells) != len(header):
                errors.append(
                    f"{source}:{line}: expected {len(header)} columns, found {len(cells)}"
                )
                continue
            rec = dict(zip(header, cells, strict=True))
            prefix, kind, operator = rec["prefix"], rec["kind"], rec["host_operator"]
            why = _row_problem(prefix, kind, operator)
            if why is None and prefix in segments:
                why = f"duplicate prefix {prefix!r} (first on line {first_line[prefix]})"
            if why is not None:
                errors.append(f"{source}:{line}: {why}")
                continue
            segments[prefix] = Segment(prefix, kind, operator)
            first_line[prefix] = line
        if header is None and not errors:
            errors.append(f"{source}:1: empty segment table (no header row)")
        if errors:
            raise ValueError("\n".join(errors))
        return cls(segments.values(), source)

    def lookup(self, national_number: str) -> Segment | None:
        """The segment with the longest prefix of ``national_number``, or None."""
        get = self._by_prefix.get
        for length in self._lengths:
            if length <= len(national_number):
                seg = get(national_number[:length])
                if seg is not None:
                    return seg
        return None

    def __len__(self) -> int:
        return len(self._by_prefix)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._by_prefix.values())


def _row_problem(prefix: str, kind: str, operator: str) -> str | None:
    if not prefix:
        return "empty prefix"
    if not (prefix.isascii() and prefix.isdigit()):
        return f"prefix {prefix!r} is not all digits"
    if len(prefix) > _MAX_PREFIX_LENGTH:
        return f"prefix {prefix!r} is longer than {_MAX_PREFIX_LENGTH} digits"
    if kind not in SEGMENT_KINDS:
        return f"unknown kind {kind!r} (expected one of {', '.join(sorted(SEGMENT_KINDS))})"
    if not operator:
        return "empty host_operator"
    return None


def _rows(reader: Iterator[list[str]], source: str, errors: list[str]) -> Iterator[list[str]]:
    """The reader's rows until one it cannot split (a field over the CSV field limit, a
    stray line break in a field), which ends the table with an error at its line."""
    try:
        yield from reader
    except csv.Error as exc:
        line = getattr(reader, "line_num", 0)
        errors.append(f"{source}:{line}: not valid CSV ({str(exc)[:100]})")
