"""In-process state backend: plain dicts behind one LRU, bounded by ``max_keys``.

Chosen over aiocache's SimpleMemoryCache: every aiocache call goes through
``asyncio.wait_for`` (≈ 25 µs measured) and a window needs structured values (buckets,
sets, sketches) that a key/value cache would only store whole. Expiry is driven by the
event clock (``now``) so tests and replays behave like live traffic. Only for a single
replica: replicas each counting their own traffic would undercount.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from dsl.aggregates import AggKind, AggregateRef

from . import hll
from .backend import StateStats
from .keys import KeyHasher
from .limits import DISTINCT_EXACT_CAP, RUN_MAX_MEMBERS, RUN_WALK_CAP
from .plan import Planner, ReadOp, WriteOp

_COUNT = AggKind.COUNT
_DISTINCT = AggKind.DISTINCT


@dataclass(slots=True)
class _Count:
    """Buckets in ascending order with running totals, so a window's count is two
    bisections and a subtraction however many buckets the key holds: a tenant-wide key
    (a list, a segment) holds hundreds and is read by every request, often by several
    offset windows at once."""

    expires_at: float
    buckets: list[int] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)  # events in buckets[0..i], plus `floor`
    floor: int = 0  # the running total just before buckets[0] (what trimming removed)

    def between(self, lo: int, hi: int) -> int:
        buckets = self.buckets
        i = bisect_left(buckets, lo)
        j = bisect_right(buckets, hi)
        if j <= i:
            return 0
        return self.totals[j - 1] - (self.totals[i - 1] if i else self.floor)

    def add(self, pos: int, cutoff: int) -> None:
        buckets, totals = self.buckets, self.totals
        if not buckets or pos > buckets[-1]:  # time moves forwards: the usual case
            buckets.append(pos)
            totals.append((totals[-1] if totals else self.floor) + 1)
        elif pos == buckets[-1]:
            totals[-1] += 1
        else:  # a late event: an older bucket, so every later running total moves too
            i = bisect_left(buckets, pos)
            if buckets[i] != pos:
                buckets.insert(i, pos)
                totals.insert(i, totals[i - 1] if i else self.floor)
            for k in range(i, len(totals)):
                totals[k] += 1
        # Amortised, as before: trim only once the key holds more buckets than the
        # windows over it can read.
        if len(buckets) > pos - cutoff + 2 and buckets[0] < cutoff:
            i = bisect_left(buckets, cutoff)
            self.floor = totals[i - 1]
            del buckets[:i], totals[:i]


@dataclass(slots=True)
class _Distinct:
    expires_at: float
    seen: dict[bytes, int] = field(default_factory=dict)  # member -> last bucket seen
    sketches: dict[int, bytearray] | None = None  # per bucket, once beyond the exact cap


@dataclass(slots=True)
class _Run:
    expires_at: float
    seen: dict[bytes, int] = field(default_factory=dict)  # suffix digits -> last time (ms)
    trim_at: int = 64


_Entry = _Count | _Distinct | _Run
_E = TypeVar("_E", _Count, _Distinct, _Run)


class MemoryBackend:
    def __init__(self, *, hash_key: bytes, max_keys: int = 1_000_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.stats = StateStats()
        self._planner = Planner(KeyHasher(hash_key))
        self._max_keys = max_keys
        self._store: OrderedDict[str, _Entry] = OrderedDict()

    async def apply(
        self, tenant: str, refs: Sequence[AggregateRef], now: float, *, record: bool
    ) -> dict[str, int]:
        self.stats.calls += 1
        try:
            reads, writes, fixed = self._planner.plan(tenant, refs, now, record=record)
            values = dict(fixed) if fixed else {}
            # Every read before any write, as the Redis script does. The lookup (expiry,
            # LRU touch) and the count read are inlined: this loop runs for every ref of
            # every request, and counts are most of them.
            store = self._store
            for op in reads:
                key = op[2]
                entry = store.get(key)
                if entry is not None:
                    if entry.expires_at < now:
                        del store[key]
                        entry = None
                    else:
                        store.move_to_end(key)
                if op[1] is _COUNT:
                    n = entry.between(op[3], op[4]) if isinstance(entry, _Count) else 0
                    values[op[0]] = n + 1 if op[6] else n
                else:
                    values[op[0]] = self._read(entry, op)
            for w in writes:
                self._write(w, now)
            self.stats.keys = len(self._store)
            return values
        except Exception:
            self.stats.errors += 1
            raise

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._store.clear()
        self.stats.keys = 0

    def __len__(self) -> int:
        return len(self._store)

    # -- execution -------------------------------------------------------------------

    def _get(self, key: str, now: float) -> _Entry | None:
        entry = self._store.get(key)
        if entry is None:
            return None
        if entry.expires_at < now:
            del self._store[key]
            return None
        self._store.move_to_end(key)
        return entry

    def _read(self, entry: _Entry | None, op: ReadOp) -> int:
        _, kind, _, lo, hi, member, include = op
        inc = 1 if include else 0
        if kind is _COUNT:
            if not isinstance(entry, _Count):
                return inc
            return entry.between(lo, hi) + inc
        if kind is _DISTINCT:
            if not isinstance(entry, _Distinct):
                return inc
            if entry.sketches is not None:
                regs = [s for b, s in entry.sketches.items() if lo <= b <= hi]
                return hll.estimate(hll.union(regs)) + inc
            n = sum(1 for b in entry.seen.values() if lo <= b <= hi)
            if inc:
                last = entry.seen.get(member)
                if last is None or not lo <= last <= hi:
                    n += 1
            return n
        return self._run(entry if isinstance(entry, _Run) else None, op)

    @staticmethod
    def _run(entry: _Run | None, op: ReadOp) -> int:
        _, _, _, lo, hi, member, include = op
        if entry is None:
            # Nothing seen in this segment: the current number alone, if it feeds.
            return 1 if include else 0
        get = entry.seen.get
        t = get(member)
        if not (include or (t is not None and lo < t <= hi)):
            return 0
        width = len(member)
        x = int(member)
        run = 1
        for step in (1, -1):
            for i in range(1, RUN_WALK_CAP + 1):
                y = x + step * i
                if y < 0:
                    break
                t = get(f"{y:0{width}d}".encode("ascii"))
                if t is None or not lo < t <= hi:
                    break
                run += 1
        return run

    def _write(self, w: WriteOp, now: float) -> None:
        kind, key, pos, member, ttl_s, cutoff = w
        entry = self._get(key, now)
        expires_at = now + ttl_s
        if kind is _COUNT:
            if not isinstance(entry, _Count):
                entry = self._insert(key, _Count(expires_at))
            entry.add(pos, cutoff)
        elif kind is _DISTINCT:
            if not isinstance(entry, _Distinct):
                entry = self._insert(key, _Distinct(expires_at))
            self._write_distinct(entry, pos, member, cutoff)
        else:
            if not isinstance(entry, _Run):
                entry = self._insert(key, _Run(expires_at))
            self._write_run(entry, pos, member, cutoff)
        if expires_at > entry.expires_at:
            entry.expires_at = expires_at

    @staticmethod
    def _write_distinct(entry: _Distinct, pos: int, member: bytes, cutoff: int) -> None:
        if entry.sketches is None:
            seen = entry.seen
            if member not in seen and len(seen) >= DISTINCT_EXACT_CAP:
                for m in [m for m, b in seen.items() if b < cutoff]:
                    del seen[m]
            if member in seen or len(seen) < DISTINCT_EXACT_CAP:
                if seen.get(member, pos) <= pos:
                    seen[member] = pos
                return
            # Beyond the exact cap: move what we know into per-bucket sketches, for good.
            entry.sketches = {}
            for m, b in seen.items():
                hll.add(entry.sketches.setdefault(b, hll.new_registers()), _h64(m))
            seen.clear()
        sketches = entry.sketches
        hll.add(sketches.setdefault(pos, hll.new_registers()), _h64(member))
        for b in [b for b in sketches if b < cutoff]:
            del sketches[b]

    @staticmethod
    def _write_run(entry: _Run, pos: int, member: bytes, cutoff: int) -> None:
        seen = entry.seen
        if seen.get(member, pos) <= pos:
            seen[member] = pos
        if len(seen) >= entry.trim_at:
            for m in [m for m, t in seen.items() if t <= cutoff]:
                del seen[m]
            if len(seen) > RUN_MAX_MEMBERS:
                oldest = sorted(seen.items(), key=lambda kv: kv[1])
                for m, _ in oldest[: len(seen) - RUN_MAX_MEMBERS]:
                    del seen[m]
            # Amortised: the next trim waits until the map has grown again.
            entry.trim_at = max(64, min(2 * len(seen), RUN_MAX_MEMBERS + RUN_MAX_MEMBERS // 10))

    def _insert(self, key: str, entry: _E) -> _E:
        self._store[key] = entry
        self._store.move_to_end(key)
        while len(self._store) > self._max_keys:
            self._store.popitem(last=False)
            self.stats.evictions += 1
        return entry


def _h64(member: bytes) -> int:
    return int.from_bytes(member, "big")
