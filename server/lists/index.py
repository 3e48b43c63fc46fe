"""A loaded intelligence list: exact numbers, prefixes and ranges, each with labels.

Built for a million entries per list: exact numbers are two flat arrays, the sorted
numbers and, beside each, an index into a small table of distinct label mappings (many
entries share one label tuple); prefixes are one dict per prefix length, and overlapping
ranges are flattened at build time into sorted boundaries, each segment holding its
narrowest covering range. An exact lookup is one bisect.

Flat arrays rather than a dict of ints: 16 bytes an entry instead of about 80, no object
per entry for the garbage collector to walk or for a reload to free one by one (freeing a
million-entry dict holds the interpreter for tens of milliseconds, all of it on the event
loop when the old list is swapped out), and a pickle that is two byte strings, so a list
parsed in another process (server/lists/pool.py) arrives in a copy.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any

NO_LABEL = -1


@dataclass(frozen=True, slots=True)
class ListStats:
    entries: int
    prefixes: int
    ranges: int
    skipped_expired: int
    duplicates: int = 0  # lines that repeated an earlier entry (the later line won)


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """A range as loaded; ``order`` (its line) breaks ties between equally narrow ranges."""

    low: int
    high: int
    label: int
    order: int


class ListIndex:
    """Implements dsl.lists.ListView. Immutable once built; safe to share across tasks."""

    __slots__ = (
        "_exact_labels",
        "_exact_numbers",
        "_labels",
        "_last",
        "_prefixes",
        "_range_labels",
        "_range_starts",
        "label_columns",
        "name",
        "next_expiry",
        "path",
        "stats",
    )

    def __init__(
        self,
        *,
        name: str,
        path: str,
        label_columns: tuple[str, ...],
        labels: Sequence[Mapping[str, str]],
        exact: Mapping[int, int],
        prefixes: Mapping[str, int],
        ranges: Sequence[RangeSpec],
        skipped_expired: int = 0,
        duplicates: int = 0,
        next_expiry: date | None = None,
    ) -> None:
        self.name = name
        self.path = path
        # The earliest `expires` date of a row still on the list: the day after it, the
        # list must be loaded again (docs/lists.md).
        self.next_expiry = next_expiry
        self.label_columns = label_columns
        self._labels = tuple(labels)
        numbers = sorted(exact)
        self._exact_numbers: array[int] = array("Q", numbers)
        # Label ids are small (distinct label tuples): "l" for the rare list with many.
        self._exact_labels: array[int] = array("l", [exact[n] for n in numbers])
        by_length: dict[int, dict[str, int]] = {}
        for digits, label in prefixes.items():
            by_length.setdefault(len(digits), {})[digits] = label
        # Longest first: the first prefix that matches is the most specific.
        self._prefixes = tuple(sorted(by_length.items(), reverse=True))
        self._range_starts, self._range_labels = _flatten(ranges)
        self.stats = ListStats(len(exact), len(prefixes), len(ranges), skipped_expired, duplicates)
        self._last: tuple[object, Mapping[str, str] | None] = (None, None)

    def labels(self, e164: str) -> Mapping[str, str] | None:
        """Labels of the most specific match: exact, then longest prefix, then narrowest range."""
        # One decision asks about the same number several times (the plan, then each rule
        # that tests membership): remember the last answer.
        last = self._last
        if last[0] == e164:
            return last[1]
        found = self._lookup(e164)
        self._last = (e164, found)
        return found

    def _lookup(self, e164: str) -> Mapping[str, str] | None:
        if type(e164) is not str or e164[:1] != "+":
            return None
        digits = e164[1:]
        if not (digits.isascii() and digits.isdigit()) or digits[0] == "0":
            return None
        number = int(digits)
        numbers = self._exact_numbers
        i = bisect_left(numbers, number)
        if i < len(numbers) and numbers[i] == number:
            return self._labels[self._exact_labels[i]]
        size = len(digits)
        for length, table in self._prefixes:
            if length <= size:
                label = table.get(digits[:length])
                if label is not None:
                    return self._labels[label]
        starts = self._range_starts
        if starts:
            i = bisect_right(starts, number) - 1
            if i >= 0:
                label = self._range_labels[i]
                if label != NO_LABEL:
                    return self._labels[label]
        return None

    def __getstate__(self) -> dict[str, Any]:
        """For pickling (a list parsed in another process): the label mappings as plain
        dicts, everything else as it is."""
        state = {name: getattr(self, name) for name in self.__slots__ if name != "_last"}
        state["_labels"] = tuple(dict(m) for m in self._labels)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._labels = tuple(MappingProxyType(m) for m in state["_labels"])
        self._last = (None, None)

    def parts(self) -> tuple[dict[str, Any], array[int], array[int]]:
        """(everything small, the exact numbers, their labels): how a list crosses from the
        process that parsed it, the two big arrays as bytes in chunks of their own."""
        state = self.__getstate__()
        return state, state.pop("_exact_numbers"), state.pop("_exact_labels")

    @classmethod
    def from_parts(
        cls, state: dict[str, Any], numbers: array[int], labels: array[int]
    ) -> ListIndex:
        index = cls.__new__(cls)
        index.__setstate__({**state, "_exact_numbers": numbers, "_exact_labels": labels})
        return index

    def __contains__(self, e164: object) -> bool:
        return isinstance(e164, str) and self.labels(e164) is not None

    def __len__(self) -> int:
        return self.stats.entries + self.stats.prefixes + self.stats.ranges

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"ListIndex(name={self.name!r}, entries={s.entries}, prefixes={s.prefixes}, "
            f"ranges={s.ranges}, skipped_expired={s.skipped_expired}, "
            f"duplicates={s.duplicates})"
        )


def _flatten(ranges: Sequence[RangeSpec]) -> tuple[array[int], array[int]]:
    """Sorted segment starts and, per segment, the label of its narrowest covering range.

    A sweep over the boundaries with a heap of the ranges open at each point, keyed by
    (width, order): O((R + S) log R) for R ranges and S segments.
    """
    starts: array[int] = array("Q")
    labels: array[int] = array("q")
    if not ranges:
        return starts, labels
    boundaries = sorted({r.low for r in ranges} | {r.high + 1 for r in ranges})
    by_low = sorted(ranges, key=lambda r: r.low)
    heap: list[tuple[int, int, int, int]] = []
    nxt = 0
    for point in boundaries:
        while nxt < len(by_low) and by_low[nxt].low <= point:
            r = by_low[nxt]
            heapq.heappush(heap, (r.high - r.low, r.order, r.high, r.label))
            nxt += 1
        while heap and heap[0][2] < point:
            heapq.heappop(heap)
        label = heap[0][3] if heap else NO_LABEL
        if labels and labels[-1] == label:
            continue  # same answer as the segment before: merge
        starts.append(point)
        labels.append(label)
    return starts, labels
