"""In-process state backend: plain dicts behind one LRU, bounded by ``max_keys``.

Chosen over aiocache's SimpleMemoryCache: every aiocache call goes through
``asyncio.wait_for`` (≈ 25 µs measured) and a window needs structured values (buckets,
sets, sketches) that a key/value cache would only store whole. Expiry is driven by the
event clock (``now``) so tests and replays behave like live traffic. Only for a single
replica: replicas each counting their own traffic would undercount.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from dsl.aggregates import AggKind, AggregateRef

from . import hll
from .backend import StateStats
from .keys import KeyHasher
from .limits import DISTINCT_EXACT_CAP, RUN_MAX_MEMBERS, RUN_WALK_CAP
from .plan import Plan, Planner, ReadOp, WriteOp


@dataclass(slots=True)
class _Count:
    expires_at: float
    buckets: dict[int, int] = field(default_factory=dict)


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
            plan = self._planner.plan(tenant, refs, now, record=record)
            return self._execute(plan, now)
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

    def _execute(self, plan: Plan, now: float) -> dict[str, int]:
        values = dict(plan.fixed)
        for op in plan.reads:  # every read before any write, as the Redis script does
            values[op.ref_id] = self._read(op, now)
        for w in plan.writes:
            self._write(w, now)
        self.stats.keys = len(self._store)
        return values

    def _get(self, key: str, now: float) -> _Entry | None:
        entry = self._store.get(key)
        if entry is None:
            return None
        if entry.expires_at < now:
            del self._store[key]
            return None
        self._store.move_to_end(key)
        return entry

    def _read(self, op: ReadOp, now: float) -> int:
        entry = self._get(op.key, now)
        inc = 1 if op.include else 0
        if op.kind is AggKind.COUNT:
            if not isinstance(entry, _Count):
                return inc
            lo, hi = op.lo, op.hi
            return sum(n for b, n in entry.buckets.items() if lo <= b <= hi) + inc
        if op.kind is AggKind.DISTINCT:
            if not isinstance(entry, _Distinct):
                return inc
            if entry.sketches is not None:
                regs = [s for b, s in entry.sketches.items() if op.lo <= b <= op.hi]
                return hll.estimate(hll.union(regs)) + inc
            lo, hi = op.lo, op.hi
            n = sum(1 for b in entry.seen.values() if lo <= b <= hi)
            if inc:
                last = entry.seen.get(op.member)
                if last is None or not lo <= last <= hi:
                    n += 1
            return n
        return self._run(entry if isinstance(entry, _Run) else None, op)

    def _run(self, entry: _Run | None, op: ReadOp) -> int:
        seen = entry.seen if entry is not None else {}
        lo, hi = op.lo, op.hi

        def present(member: bytes) -> bool:
            t = seen.get(member)
            return t is not None and lo < t <= hi

        if not (op.include or present(op.member)):
            return 0
        width = len(op.member)
        x = int(op.member)
        run = 1
        for step in (1, -1):
            for i in range(1, RUN_WALK_CAP + 1):
                y = x + step * i
                if y < 0 or not present(f"{y:0{width}d}".encode("ascii")):
                    break
                run += 1
        return run

    def _write(self, w: WriteOp, now: float) -> None:
        entry = self._get(w.key, now)
        expires_at = now + w.ttl_s
        if w.kind is AggKind.COUNT:
            if not isinstance(entry, _Count):
                entry = self._insert(w.key, _Count(expires_at))
            buckets = entry.buckets
            buckets[w.pos] = buckets.get(w.pos, 0) + 1
            if len(buckets) > w.pos - w.cutoff + 2:
                for b in [b for b in buckets if b < w.cutoff]:
                    del buckets[b]
        elif w.kind is AggKind.DISTINCT:
            if not isinstance(entry, _Distinct):
                entry = self._insert(w.key, _Distinct(expires_at))
            self._write_distinct(entry, w)
        else:
            if not isinstance(entry, _Run):
                entry = self._insert(w.key, _Run(expires_at))
            self._write_run(entry, w)
        entry.expires_at = max(entry.expires_at, expires_at)

    @staticmethod
    def _write_distinct(entry: _Distinct, w: WriteOp) -> None:
        if entry.sketches is None:
            seen = entry.seen
            if w.member not in seen and len(seen) >= DISTINCT_EXACT_CAP:
                for m in [m for m, b in seen.items() if b < w.cutoff]:
                    del seen[m]
            if w.member in seen or len(seen) < DISTINCT_EXACT_CAP:
                if seen.get(w.member, w.pos) <= w.pos:
                    seen[w.member] = w.pos
                return
            # Beyond the exact cap: move what we know into per-bucket sketches, for good.
            entry.sketches = {}
            for m, b in seen.items():
                hll.add(entry.sketches.setdefault(b, hll.new_registers()), _h64(m))
            seen.clear()
        sketches = entry.sketches
        hll.add(sketches.setdefault(w.pos, hll.new_registers()), _h64(w.member))
        for b in [b for b in sketches if b < w.cutoff]:
            del sketches[b]

    @staticmethod
    def _write_run(entry: _Run, w: WriteOp) -> None:
        seen = entry.seen
        if seen.get(w.member, w.pos) <= w.pos:
            seen[w.member] = w.pos
        if len(seen) >= entry.trim_at:
            for m in [m for m, t in seen.items() if t <= w.cutoff]:
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
