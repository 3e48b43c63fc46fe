"""The tenant registry: one slot per tenant holding its live bundle.

A slot's bundle is replaced by a single reference assignment, so a request reads either
the old bundle or the new one, never a mix. A failed build leaves the slot's bundle alone
and records why (``last_error``), which ``GetPolicyStatus`` reports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from server.bundle.compiling import InProcessCompiler, PolicyCompiler
from server.bundle.load import (
    BundleError,
    StateLists,
    TenantBundle,
    is_tenant_dir,
    load_bundle,
)
from server.bundle.tenant_config import TENANT_NAME
from server.lists.pool import ListPool
from server.phone import PhoneParser

log = logging.getLogger("ringfence.tenants")


@dataclass(slots=True)
class TenantSlot:
    name: str
    bundle: TenantBundle | None = None
    last_error: str = ""
    last_error_at: float = 0.0
    reloads: int = 0


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    tenant: str
    ok: bool
    version: str = ""
    error: str = ""
    removed: bool = False
    # False when the tenant is as it was: the same version already live, or the same
    # error already reported (metrics and logs count only changes).
    changed: bool = True


@dataclass(slots=True)
class TenantRegistry:
    root: Path
    parser: PhoneParser
    # The server and the CLI pass a CompilePool (worker processes with a budget).
    compiler: PolicyCompiler = field(default_factory=InProcessCompiler)
    # Tenants built at once: with as many as the pool has workers, one tenant whose
    # policy runs into the time budget does not hold back the others' reloads.
    build_threads: int = 1
    # The server parses big lists in a child process (server/lists/pool.py).
    lists: ListPool | None = None
    slots: dict[str, TenantSlot] = field(default_factory=dict)
    # Called with each outcome (metrics, logs); must not raise.
    listeners: list[Callable[[ReloadOutcome], None]] = field(default_factory=list)
    # Checks a built bundle against what the operator allows (its state backend):
    # returns why it may not load, or None.
    admit: Callable[[Path, TenantBundle], str | None] | None = None
    # What "today" is for list rows' expiry dates (tests move it).
    clock: Callable[[], float] = time.time
    # The server's views of lists kept in state (offline tools have none).
    state_lists: StateLists | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def get(self, name: str) -> TenantBundle | None:
        slot = self.slots.get(name)
        return slot.bundle if slot is not None else None

    def names(self) -> list[str]:
        return sorted(self.slots)

    def ready(self) -> bool:
        """Serving needs at least one tenant with a good policy."""
        return any(s.bundle is not None for s in self.slots.values())

    def discover(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if is_tenant_dir(p) and TENANT_NAME.fullmatch(p.name)
        )

    def refresh_due(self, now: float) -> list[str]:
        """Tenants whose bundle holds a list row that has expired since it was built."""
        return [
            name
            for name, slot in self.slots.items()
            if slot.bundle is not None
            and slot.bundle.refresh_at is not None
            and slot.bundle.refresh_at <= now
        ]

    def load_sync(self, names: Iterable[str] | None = None) -> list[ReloadOutcome]:
        """Build and swap in one go; for start-up and the CLI, where nothing else runs."""
        full = names is None
        return self._apply(self._build_all(names), full=full)

    async def reload(
        self, names: Iterable[str] | None = None, *, root: Path | None = None
    ) -> list[ReloadOutcome]:
        """Build off the event loop, then swap on it, so readers on the loop never see the
        slot table change under them. ``root`` moves the registry to another rules
        directory first (a newly unpacked bundle), under the same lock as every reload."""
        async with self._lock:
            if root is not None:
                self.root = root
            built = await asyncio.to_thread(self._build_all, names)
            return self._apply(built, full=names is None)

    def _build_all(self, names: Iterable[str] | None) -> dict[str, TenantBundle | str]:
        wanted = self.discover() if names is None else sorted(set(names))
        if self.build_threads <= 1 or len(wanted) <= 1:
            return {name: self._build_one(name) for name in wanted}
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=self.build_threads, thread_name_prefix="tenant-build"
        ) as pool:
            return dict(zip(wanted, pool.map(self._build_one, wanted), strict=True))

    def _build_one(self, name: str) -> TenantBundle | str:
        try:
            bundle = load_bundle(
                self.root,
                name,
                self.parser,
                self.compiler,
                self.lists,
                now=self.clock(),
                state_lists=self.state_lists,
            )
            refused = self.admit(self.root, bundle) if self.admit is not None else None
            return bundle if refused is None else refused
        except BundleError as exc:
            return exc.text()
        except Exception as exc:  # a loader bug must not take the old policy down with it
            log.exception("tenant %s: unexpected error while loading", name)
            return f"{self.root / name}: error: internal error while loading: {exc!r}"

    def _apply(self, built: dict[str, TenantBundle | str], *, full: bool) -> list[ReloadOutcome]:
        outcomes: list[ReloadOutcome] = []
        now = time.time()
        for name, result in built.items():
            slot = self.slots.get(name)
            if slot is None:
                slot = self.slots[name] = TenantSlot(name)
            slot.reloads += 1
            if isinstance(result, str):
                changed = result != slot.last_error
                slot.last_error, slot.last_error_at = result, now
                outcomes.append(ReloadOutcome(name, ok=False, error=result, changed=changed))
                continue
            changed = bool(slot.last_error)
            if slot.bundle is None or slot.bundle.version != result.version:
                slot.bundle = result
                changed = True
            slot.last_error = ""
            outcomes.append(ReloadOutcome(name, ok=True, version=result.version, changed=changed))
        if full:
            for gone in sorted(set(self.slots) - set(built)):
                # A tenant folder can vanish for an instant while a ConfigMap swaps its
                # symlinks; only a folder that is still gone on a fresh look is removed.
                if not (self.root / gone).is_dir():
                    del self.slots[gone]
                    outcomes.append(ReloadOutcome(gone, ok=True, removed=True))
        for outcome in outcomes:
            self._notify(outcome)
        return outcomes

    def _notify(self, outcome: ReloadOutcome) -> None:
        for listener in self.listeners:
            try:
                listener(outcome)
            except Exception:
                log.exception("reload listener failed")
