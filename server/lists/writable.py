"""Lists the server writes: ``list NAME from state`` in a policy, entries added and removed
through PolicyService (``ringfence list add/remove/show``), kept in the tenant's state
backend so every replica sharing it sees them.

A review queue puts a number on a block list for 7 days without a deploy, the way Stripe
Radar's value lists work. The request path never waits for them: each replica keeps a
mirror of the lists its tenants declare and refreshes it when a list's version moves (one
poll a second, and at once on the replica that made the change), and a policy reads the
mirror like a file list. Entries expire by themselves (``ttl``), checked at every lookup.

Numbers are stored only as keyed hashes (the state's hash key): Redis never holds one, and
a listing shows each entry's masked number.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from server.state import StateError
from server.state.keys import KeyHasher
from server.state.pool import BackendPool

log = logging.getLogger("ringfence.lists")

# What one call and one list may hold: a list is state every replica mirrors in memory.
MAX_ENTRIES_PER_CALL = 1000
MAX_ENTRIES_PER_LIST = 100_000
MAX_NOTE = 500
MAX_LABELS = 16
MAX_LABEL_KEY = 64
MAX_LABEL_VALUE = 256
MAX_TTL_S = 366 * 86_400
# What all of one tenant's lists kept in state may take, encoded: every replica holds them
# in memory, and 100,000 entries of 16 long labels each would be gigabytes.
MAX_TENANT_BYTES = 32 * 1024 * 1024
POLL_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEntry:
    """One entry as kept in state; the number itself only as its hash (the field)."""

    masked: str
    note: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    added_at: float
    expires_at: float | None = None
    added_by: str = ""

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def encode(self) -> bytes:
        # UTF-8, not \u escapes: a character costs at most 4 bytes of the tenant's bound.
        return json.dumps(
            {
                "m": self.masked,
                "n": self.note,
                "l": dict(self.labels),
                "a": self.added_at,
                "e": self.expires_at,
                "b": self.added_by,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> StoredEntry:
        d = json.loads(raw)
        return cls(
            masked=str(d["m"]),
            note=str(d.get("n", "")),
            labels=MappingProxyType({str(k): str(v) for k, v in d.get("l", {}).items()}),
            added_at=float(d["a"]),
            expires_at=None if d.get("e") is None else float(d["e"]),
            added_by=str(d.get("b", "")),
        )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int
    entries: Mapping[str, StoredEntry]  # hashed number -> entry
    raw: Mapping[str, bytes]  # hashed number -> the entry as stored
    nbytes: int  # the stored entries' size


_EMPTY = _Snapshot(0, MappingProxyType({}), MappingProxyType({}), 0)


class StateListView:
    """A list kept in state, as a policy reads it (``dsl.lists.ListView``): the mirror's
    latest snapshot, with expired entries left out."""

    __slots__ = ("_clock", "_hasher", "_key", "_mirror")

    def __init__(
        self,
        mirror: StateListMirror,
        key: tuple[str, str, str],
        hasher: KeyHasher,
        clock: Callable[[], float],
    ) -> None:
        self._mirror = mirror
        self._key = key
        self._hasher = hasher
        self._clock = clock

    def _entry(self, e164: object) -> StoredEntry | None:
        if not isinstance(e164, str) or not e164:
            return None
        snap = self._mirror.snapshots.get(self._key, _EMPTY)
        if not snap.entries:
            return None
        entry = snap.entries.get(self._hasher.hashed_key(e164))
        return entry if entry is not None and entry.live(self._clock()) else None

    def __contains__(self, e164: object) -> bool:
        return self._entry(e164) is not None

    def labels(self, e164: str) -> Mapping[str, str] | None:
        entry = self._entry(e164)
        if entry is None:
            return None
        return {**entry.labels, "note": entry.note}

    def __len__(self) -> int:
        now = self._clock()
        snap = self._mirror.snapshots.get(self._key, _EMPTY)
        return sum(1 for e in snap.entries.values() if e.live(now))


class StateListMirror:
    """This replica's copy of every list kept in state that a loaded policy declares,
    keyed by (state backend name, tenant, list)."""

    def __init__(
        self, pool: BackendPool, hasher: KeyHasher, clock: Callable[[], float] = time.time
    ) -> None:
        self.pool = pool
        self.hasher = hasher
        self.clock = clock
        self.snapshots: dict[tuple[str, str, str], _Snapshot] = {}
        self._wanted: set[tuple[str, str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def view(self, state: str, tenant: str, name: str) -> StateListView:
        """The list as a policy reads it; from now on the mirror keeps it fresh."""
        key = (state, tenant, name)
        self._wanted.add(key)
        return StateListView(self, key, self.hasher, self.clock)

    def keep_only(self, wanted: Iterable[tuple[str, str, str]]) -> None:
        """Stop following lists no loaded policy declares any more."""
        self._wanted = set(wanted)
        for gone in set(self.snapshots) - self._wanted:
            del self.snapshots[gone]

    def decoded(
        self, key: tuple[str, str, str], raw: Mapping[str, bytes]
    ) -> dict[str, StoredEntry]:
        """The entries of ``raw`` (a list as stored), decoding only those the last snapshot
        of ``key`` did not hold as they are: a change of a few entries costs a few decodes,
        not one per entry of a list of 100,000 (seconds on the event loop)."""
        held = self.snapshots.get(key, _EMPTY)
        out: dict[str, StoredEntry] = {}
        for f, value in raw.items():
            known = held.entries.get(f)
            if known is not None and held.raw.get(f) == value:
                out[f] = known
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                out[f] = StoredEntry.decode(value)
        return out

    def tenant_bytes(self, tenant: str, besides: tuple[str, str, str]) -> int:
        """What the tenant's other lists kept in state take, as this replica last read them."""
        return sum(
            snap.nbytes
            for key, snap in self.snapshots.items()
            if key[1] == tenant and key != besides
        )

    def status(self, tenant: str) -> list[tuple[str, int, int]]:
        """(list, live entries, version) of each list the tenant's policy keeps in state."""
        now = self.clock()
        out = []
        for state, t, name in sorted(self._wanted):
            if t == tenant:
                snap = self.snapshots.get((state, t, name), _EMPTY)
                live = sum(1 for e in snap.entries.values() if e.live(now))
                out.append((name, live, snap.version))
        return out

    async def refresh(self, only: Iterable[tuple[str, str, str]] | None = None) -> None:
        """Read every followed list whose version moved (one version call per backend)."""
        keys = sorted(self._wanted if only is None else set(only) & self._wanted)
        by_state: dict[str, list[tuple[str, str, str]]] = {}
        for key in keys:
            by_state.setdefault(key[0], []).append(key)
        for state, group in by_state.items():
            try:
                store = self.pool.backend_for(group[0][1], state).lists
                versions = await store.versions([(t, n) for _, t, n in group])
                for key, version in zip(group, versions, strict=True):
                    held = self.snapshots.get(key)
                    if held is not None and held.version == version:
                        continue
                    read_version, raw = await store.read(key[1], key[2])
                    self.snapshots[key] = _Snapshot(
                        read_version,
                        MappingProxyType(self.decoded(key, raw)),
                        MappingProxyType(raw),
                        sum(map(len, raw.values())),
                    )
            except StateError as exc:
                # The last snapshot stays: a list that cannot be read is not an empty list.
                log.warning("state lists not refreshed", extra={"state": state, "error": str(exc)})

    async def run(self, every_s: float = POLL_S) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not stop the lists from refreshing
                log.exception("state lists refresh failed; trying again")
            await asyncio.sleep(every_s)

    def start(self, every_s: float = POLL_S) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(every_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
