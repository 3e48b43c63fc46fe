"""In-process state backend: plain dicts, one LRU per tenant, bounded by ``max_keys``.

Each tenant has its own LRU, so a flood of one tenant's numbers evicts that tenant's keys
and not another's: a key is evicted from the tenant inserting it when that tenant holds at
least its fair share (``max_keys`` / tenants holding keys), otherwise from the tenant
holding the most. A tenant within its fair share is never evicted by another's traffic.
``tenant_max_keys`` caps any one tenant outright.

Chosen over aiocache's SimpleMemoryCache: every aiocache call goes through
``asyncio.wait_for`` (≈ 25 µs measured) and a window needs structured values (buckets,
sets, sketches) that a key/value cache would only store whole. Expiry is driven by the
receipt clock (``received``; the event time in a replay) so tests and replays behave like
live traffic. Only for a single
replica: replicas each counting their own traffic would undercount.

``apply`` executes the planner's plan (``plan.py``), the same plan the Redis script
executes: every read, then every write. What a value means is decided there and in
docs/state.md, not here; this module only stores buckets and answers ranges.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar

from dsl.aggregates import SUM_LIMIT, AggKind, RefLike

from . import hll
from .backend import Applied, Claim, StateStats
from .claims import DEFAULT_CLAIMS_PER_TENANT, MemoryClaims
from .keys import KeyHasher
from .limits import DISTINCT_EXACT_CAP, RUN_MAX_MEMBERS, RUN_WALK_CAP
from .lists import MemoryLists
from .plan import NONE, Planner, WriteOp

_COUNT = AggKind.COUNT
_DISTINCT = AggKind.DISTINCT
_RUN = AggKind.RUN
_SEEN = AggKind.FIRST_SEEN
_SUM = AggKind.SUM
_AVG = AggKind.AVG
_MIN = AggKind.MIN
_MAX = AggKind.MAX

_M = TypeVar("_M", bytes, int)

# A member's buckets: one int when it was seen in one bucket (nearly always), else the
# sorted list of every bucket it was seen in, down to the key's cutoff.
Buckets = int | list[int]


def seen_in(buckets: Buckets | None, lo: int, hi: int) -> bool:
    """Whether a member was seen in a bucket within ``lo..hi``."""
    if buckets is None:
        return False
    if type(buckets) is int:
        return lo <= buckets <= hi
    assert isinstance(buckets, list)
    i = bisect_left(buckets, lo)
    return i < len(buckets) and buckets[i] <= hi


def _latest(buckets: Buckets) -> int:
    return buckets if isinstance(buckets, int) else buckets[-1]


def _add_bucket(seen: dict[_M, Buckets], member: _M, pos: int, cutoff: int) -> None:
    """Note ``member`` seen in bucket ``pos``, dropping its buckets older than ``cutoff``."""
    old = seen.get(member)
    if old is None:
        seen[member] = pos
        return
    if old == pos:
        return
    if isinstance(old, int):
        kept = [b for b in ((old, pos) if old < pos else (pos, old)) if b >= cutoff]
    else:
        kept = old
        if pos not in kept:
            insort(kept, pos)
        if kept[0] < cutoff:
            del kept[: bisect_left(kept, cutoff)]
    # The event's own bucket is never older than its cutoff, so something is always kept.
    seen[member] = kept[0] if len(kept) == 1 else kept


class _Seen:
    """age(): the receipt times of the first and of the latest sighting (seconds)."""

    __slots__ = ("expires_at", "first", "last")

    def __init__(self, expires_at: float, first: int) -> None:
        self.expires_at = expires_at
        self.first = first
        self.last = first


class _Count:
    """Buckets in ascending order with running totals, so a window's count is two
    bisections and a subtraction however many buckets the key holds: a tenant-wide key
    (a list, a segment) holds hundreds and is read by every request, often by several
    offset windows at once."""

    __slots__ = ("buckets", "expires_at", "floor", "totals")

    def __init__(self, expires_at: float, pos: int) -> None:
        # Born holding its first event: most keys are a number seen once, and building
        # the entry whole is cheaper than building it empty and adding to it.
        self.expires_at = expires_at
        self.buckets = [pos]
        self.totals = [1]  # events in buckets[0..i], plus `floor`
        self.floor = 0  # the running total just before buckets[0] (what trimming removed)

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
        # Amortised: trim only once the key holds more buckets than the windows over it
        # can read.
        if len(buckets) > pos - cutoff + 2 and buckets[0] < cutoff:
            i = bisect_left(buckets, cutoff)
            self.floor = totals[i - 1]
            del buckets[:i], totals[:i]

    def read(self, lo: int, hi: int) -> int:
        buckets = self.buckets
        i = bisect_left(buckets, lo)
        j = bisect_right(buckets, hi)
        if j <= i:
            return 0
        totals = self.totals
        return totals[j - 1] - (totals[i - 1] if i else self.floor)


class _Distinct:
    __slots__ = ("expires_at", "seen", "sketches")

    def __init__(self, expires_at: float, member: bytes, pos: int) -> None:
        self.expires_at = expires_at
        self.seen: dict[bytes, Buckets] = {member: pos}
        self.sketches: dict[int, hll.Registers] | None = None  # per bucket, beyond the cap


class _Run:
    """Numbers seen in one segment (or prefix), by their digits after it. A member is the
    integer ``"1" + digits``: one int per suffix that keeps its width (``"0123"`` and
    ``"123"`` differ), and whose neighbours are ``member ± 1``, so a walk adds instead of
    formatting a string per step."""

    __slots__ = ("expires_at", "seen", "trim_at")

    def __init__(self, expires_at: float, member: int, pos: int) -> None:
        self.expires_at = expires_at
        self.seen: dict[int, Buckets] = {member: pos}
        self.trim_at = 64


class _Sums:
    """A sum's (and an average's) buckets: bucket -> [positive part, negative part's
    magnitude, number of values]. A part stops growing once it reaches SUM_LIMIT (the
    window's sum is unknown from then on), so nothing grows without bound."""

    __slots__ = ("buckets", "expires_at")

    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.buckets: dict[int, list[int]] = {}

    def add(self, pos: int, value: int, cutoff: int) -> None:
        buckets = self.buckets
        cell = buckets.get(pos)
        if cell is None:
            cell = buckets[pos] = [0, 0, 0]
            if len(buckets) > pos - cutoff + 2:
                for b in [b for b in buckets if b < cutoff]:
                    del buckets[b]
        if value > 0:
            if cell[0] < SUM_LIMIT:
                cell[0] += value
        elif value < 0 and cell[1] < SUM_LIMIT:
            cell[1] -= value
        cell[2] += 1

    def cells(self, lo: int, hi: int) -> list[list[int]]:
        buckets = self.buckets
        if hi - lo < len(buckets):
            return [c for b in range(lo, hi + 1) if (c := buckets.get(b)) is not None]
        return [c for b, c in buckets.items() if lo <= b <= hi]


class _Extreme:
    """A min's or a max's buckets: bucket -> the least (greatest) value seen in it."""

    __slots__ = ("buckets", "expires_at")

    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.buckets: dict[int, int] = {}

    def add(self, pos: int, value: int, cutoff: int, least: bool) -> None:
        buckets = self.buckets
        old = buckets.get(pos)
        if old is None:
            buckets[pos] = value
            if len(buckets) > pos - cutoff + 2:
                for b in [b for b in buckets if b < cutoff]:
                    del buckets[b]
        elif value < old if least else value > old:
            buckets[pos] = value

    def values(self, lo: int, hi: int) -> list[int]:
        buckets = self.buckets
        if hi - lo < len(buckets):
            return [v for b in range(lo, hi + 1) if (v := buckets.get(b)) is not None]
        return [v for b, v in buckets.items() if lo <= b <= hi]


def _read_sum(entry: _Entry | None, lo: int, hi: int, member: bytes, include: bool) -> int:
    pos = neg = 0
    if isinstance(entry, _Sums):
        for cell in entry.cells(lo, hi):
            pos += cell[0]
            neg += cell[1]
    if include:
        value = int(member)
        if value > 0:
            pos += value
        else:
            neg -= value
    return NONE if pos >= SUM_LIMIT or neg >= SUM_LIMIT else pos - neg


def _read_values(entry: _Entry | None, lo: int, hi: int, include: bool) -> int:
    n = sum(cell[2] for cell in entry.cells(lo, hi)) if isinstance(entry, _Sums) else 0
    return n + 1 if include else n


def _read_extreme(
    entry: _Entry | None, lo: int, hi: int, member: bytes, include: bool, least: bool
) -> int:
    found = entry.values(lo, hi) if isinstance(entry, _Extreme) else []
    if include:
        found.append(int(member))
    if not found:
        return NONE
    return min(found) if least else max(found)


_Entry = _Count | _Distinct | _Run | _Seen | _Sums | _Extreme
_Store = OrderedDict[str, _Entry]


class MemoryBackend:
    def __init__(
        self,
        *,
        hash_key: bytes,
        max_keys: int = 1_000_000,
        tenant_max_keys: int | None = None,
        claims_per_tenant: int = DEFAULT_CLAIMS_PER_TENANT,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        if tenant_max_keys is not None and tenant_max_keys < 1:
            raise ValueError("tenant_max_keys must be at least 1")
        self.stats = StateStats()
        self._hasher = KeyHasher(hash_key)
        self._planner = Planner(self._hasher)
        self._max_keys = max_keys
        self._tenant_max_keys = tenant_max_keys or max_keys
        self._stores: dict[str, _Store] = {}
        self._size = 0  # keys across every tenant's store
        self._claims = MemoryClaims(self._hasher, claims_per_tenant)
        self.lists = MemoryLists()  # lists kept in state (server/state/lists.py)

    async def apply(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        *,
        record: bool,
        received: float | None = None,
    ) -> dict[str, int | None]:
        return self.apply_now(tenant, refs, now, record=record, received=received)

    def apply_now(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        *,
        record: bool,
        received: float | None = None,
    ) -> dict[str, int | None]:
        """``apply`` without the coroutine: in-process state never waits, and a replay
        applies hundreds of thousands of events with no event loop to serve."""
        self.stats.calls += 1
        try:
            plan = self._planner.plan(tenant, refs, now, record=record, received=received)
            # Keys live on the receipt clock, as Redis keys live on Redis's: a back-dated
            # event never expires what a later read still reads (docs/state.md §9).
            clock = now if received is None else received
            store = self._stores.get(tenant)
            if store is None:
                store = self._stores[tenant] = OrderedDict()
            get = store.get
            values: dict[str, int | None] = dict(plan.fixed) if plan.fixed else {}
            # Every read comes before any write, as in the Redis script. LRU touches and
            # expiries are noted here and done after the reads.
            touched: list[str] = []
            expired: list[str] = []
            last_key: str | None = None
            last_entry: _Entry | None = None
            for rid, kind, key, lo, hi, member, include in plan.reads:
                if key is last_key:
                    # Offset windows over one key come together: the lookup and the
                    # touch of the read before stand.
                    entry = last_entry
                else:
                    entry = get(key)
                    if entry is not None:
                        if kind is not _SEEN and entry.expires_at < clock:
                            expired.append(key)
                            entry = None
                        else:
                            touched.append(key)
                    last_key, last_entry = key, entry
                if kind is _COUNT:
                    n = entry.read(lo, hi) if isinstance(entry, _Count) else 0
                    values[rid] = n + 1 if include else n
                elif kind is _DISTINCT:
                    values[rid] = (
                        _read_distinct(entry, lo, hi, member, include)
                        if isinstance(entry, _Distinct)
                        else (1 if include else 0)
                    )
                elif kind is _SUM:
                    values[rid] = _read_sum(entry, lo, hi, member, include)
                elif kind is _AVG:
                    values[rid] = _read_values(entry, lo, hi, include)
                elif kind is _MIN or kind is _MAX:
                    values[rid] = _read_extreme(entry, lo, hi, member, include, kind is _MIN)
                elif kind is _RUN:
                    values[rid] = (
                        _read_run(entry, lo, hi, int(b"1" + member), len(member), include)
                        if isinstance(entry, _Run)
                        else (1 if include else 0)
                    )
                else:
                    # age(): lo is how long a key is remembered unseen, hi the receipt time.
                    values[rid] = (
                        max(0, hi - entry.first)
                        if isinstance(entry, _Seen) and hi - entry.last <= lo
                        else 0
                    )
            for key in expired:
                if store.pop(key, None) is not None:
                    self._size -= 1
            move_to_end = store.move_to_end
            for key in touched:
                move_to_end(key)
            if plan.writes:
                self._write(store, plan.writes, clock)
            self.stats.keys = self._size
            return plan.complete(values) if plan.same or plan.numeric else values
        except Exception:
            self.stats.errors += 1
            raise

    async def apply_claimed(
        self,
        tenant: str,
        refs: Sequence[RefLike],
        now: float,
        claim: Claim,
        *,
        received: float | None = None,
    ) -> Applied:
        applied = await self._claims.run(
            tenant,
            claim,
            now,
            lambda: self.apply(tenant, refs, now, record=True, received=received),
            received=received,
        )
        if applied.replayed:
            self.stats.replays += 1
        return applied

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._stores.clear()
        self._size = 0
        self.stats.keys = 0
        await self._claims.clear()

    def __len__(self) -> int:
        return self._size

    def keys(self, tenant: str | None = None) -> list[str]:
        """The storage keys held (of one tenant, or all): for tests and debugging."""
        if tenant is not None:
            return list(self._stores.get(tenant, ()))
        return [key for store in self._stores.values() for key in store]

    def entries(self) -> list[_Entry]:
        return [entry for store in self._stores.values() for entry in store.values()]

    # -- writes --------------------------------------------------------------------

    def _write(self, store: _Store, writes: list[WriteOp], clock: float) -> None:
        for kind, key, pos, member, ttl_s, cutoff in writes:
            expires_at = (pos if kind is _SEEN else clock) + ttl_s
            # Looked up again: an earlier write of this call may have evicted the key.
            # Every key written was read in this call, so an expired one is gone already;
            # the storage key names the kind, so an entry found is of that kind.
            entry = store.get(key)
            if entry is None:
                if kind is _COUNT:
                    store[key] = _Count(expires_at, pos)
                elif kind is _SEEN:
                    store[key] = _Seen(expires_at, pos)
                elif kind is _DISTINCT:
                    store[key] = _Distinct(expires_at, member, pos)
                elif kind is _SUM:
                    entry = store[key] = _Sums(expires_at)
                    entry.add(pos, int(member), cutoff)
                elif kind is _MIN or kind is _MAX:
                    entry = store[key] = _Extreme(expires_at)
                    entry.add(pos, int(member), cutoff, kind is _MIN)
                else:
                    store[key] = _Run(expires_at, int(b"1" + member), pos)
                self._size += 1
                if len(store) > self._tenant_max_keys or self._size > self._max_keys:
                    self._evict(store)
                continue
            store.move_to_end(key)
            if isinstance(entry, _Count):
                entry.add(pos, cutoff)
            elif isinstance(entry, _Distinct):
                _write_distinct(entry, pos, member, cutoff)
            elif isinstance(entry, _Run):
                _write_run(entry, pos, int(b"1" + member), cutoff)
            elif isinstance(entry, _Sums):
                entry.add(pos, int(member), cutoff)
            elif isinstance(entry, _Extreme):
                entry.add(pos, int(member), cutoff, kind is _MIN)
            elif isinstance(entry, _Seen):
                if pos - entry.last > cutoff:  # forgotten: this sighting starts again
                    entry.first = pos
                entry.last = max(entry.last, pos)
            if expires_at > entry.expires_at:
                entry.expires_at = expires_at

    def _evict(self, store: _Store) -> None:
        """Make room after ``store`` grew by one key: from ``store`` itself when it is over
        its own cap or holds at least its fair share, else from the largest store."""
        victim = store
        if len(store) <= self._tenant_max_keys:
            live = [s for s in self._stores.values() if s]
            if len(store) * len(live) < self._size:
                victim = max(live, key=len)
        victim.popitem(last=False)
        self._size -= 1
        self.stats.evictions += 1


# -- reads and writes by kind ------------------------------------------------------------


def _read_distinct(entry: _Distinct, lo: int, hi: int, member: bytes, include: bool) -> int:
    sketches = entry.sketches
    if sketches is not None:
        # A window is at most 61 buckets; the key may hold days of them.
        get = sketches.get
        regs = [s for s in map(get, range(lo, hi + 1)) if s is not None]
        return hll.estimate(hll.union(regs)) + (1 if include else 0)
    n = 0
    for buckets in entry.seen.values():  # a plain loop: most keys hold one or two members
        if type(buckets) is int:
            if lo <= buckets <= hi:
                n += 1
        elif seen_in(buckets, lo, hi):
            n += 1
    if include and not seen_in(entry.seen.get(member), lo, hi):
        n += 1
    return n


def _read_run(entry: _Run, lo: int, hi: int, member: int, width: int, include: bool) -> int:
    """The run of consecutive numbers around ``member`` (see :class:`_Run`) seen in
    buckets ``lo..hi``, walking at most RUN_WALK_CAP neighbours each way."""
    get = entry.seen.get
    if not (include or seen_in(get(member), lo, hi)):
        return 0
    base = 10**width  # member = base + the suffix's value
    # Upwards: a neighbour is member + i, until the suffix gains a digit (999 + 1 is
    # stored as "1000", a member of the next width, not as "000").
    m = member + 1
    last = member + RUN_WALK_CAP
    top = 2 * base
    while m <= last:
        if not seen_in(get(m if m < top else _widened(m - base)), lo, hi):
            break
        m += 1
    run = m - member
    # Downwards: the suffix keeps its width and stops at zero.
    m = member - 1
    last = max(member - RUN_WALK_CAP, base)
    while m >= last:
        if not seen_in(get(m), lo, hi):
            break
        m -= 1
    return run + member - 1 - m


def _widened(value: int) -> int:
    """The member for a suffix value written without padding (it has outgrown its width)."""
    return int("1" + str(value))


def _write_distinct(entry: _Distinct, pos: int, member: bytes, cutoff: int) -> None:
    if entry.sketches is None:
        seen = entry.seen
        if member not in seen and len(seen) >= DISTINCT_EXACT_CAP:
            for m in [m for m, b in seen.items() if _latest(b) < cutoff]:
                del seen[m]
        if member in seen or len(seen) < DISTINCT_EXACT_CAP:
            _add_bucket(seen, member, pos, cutoff)
            return
        # Beyond the exact cap: move what we know into per-bucket sketches, for good.
        entry.sketches = {}
        for m, buckets in seen.items():
            for b in [buckets] if isinstance(buckets, int) else buckets:
                if b >= cutoff:
                    hll.add(_sketch(entry.sketches, b), _h64(m))
        seen.clear()
    sketches = entry.sketches
    hll.add(_sketch(sketches, pos), _h64(member))
    for b in [b for b in sketches if b < cutoff]:
        del sketches[b]


def _write_run(entry: _Run, pos: int, member: int, cutoff: int) -> None:
    seen = entry.seen
    _add_bucket(seen, member, pos, cutoff)
    if len(seen) >= entry.trim_at:
        for m in [m for m, b in seen.items() if _latest(b) < cutoff]:
            del seen[m]
        if len(seen) > RUN_MAX_MEMBERS:
            oldest = sorted(seen.items(), key=lambda kv: _latest(kv[1]))
            for m, _ in oldest[: len(seen) - RUN_MAX_MEMBERS]:
                del seen[m]
        # Amortised: the next trim waits until the map has grown again.
        entry.trim_at = max(64, min(2 * len(seen), RUN_MAX_MEMBERS + RUN_MAX_MEMBERS // 10))


def _sketch(sketches: dict[int, hll.Registers], bucket: int) -> hll.Registers:
    found = sketches.get(bucket)
    if found is None:
        found = sketches[bucket] = hll.new_registers()
    return found


def _h64(member: bytes) -> int:
    return int.from_bytes(member, "big")
