"""Hot reload: watch the rules directory and rebuild the tenants that changed.

Handles in-place edits, new and removed files, new and removed tenant folders, and the way
Kubernetes updates a mounted ConfigMap (a new timestamped folder, then the ``..data``
symlink swapped atomically). Bursts of events are debounced; a build runs off the event
loop (:meth:`TenantRegistry.reload`), and if files changed while it ran, it runs again so a
file caught half-written is never what stays live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from watchfiles import awatch

from server.bundle.registry import TenantRegistry

log = logging.getLogger("ringfence.reload")
# How often the real path of the rules directory is looked up, to follow a swapped symlink.
FOLLOW_SYMLINK_S = 0.5
# inotify can miss a change: one made before its watch is armed (watchfiles arms it on its
# own thread, a moment after start), or one it drops on overflow. The tree's fingerprint is
# compared with what the last reload saw this soon after start, and then this often.
RECONCILE_FIRST_S = 1.0
RECONCILE_EVERY_S = 10.0


def fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime_ns) of every file under ``root``, following the ConfigMap symlinks."""
    out: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("..") and d != ".git")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            out.append((path, st.st_size, st.st_mtime_ns))
    return tuple(out)


class Reloader:
    def __init__(
        self, registry: TenantRegistry, *, debounce_ms: int = 200, poll_ms: int = 0
    ) -> None:
        self.registry = registry
        self.debounce_ms = debounce_ms
        # > 0: stat the tree every poll_ms instead of inotify, which never hears of writes
        # made by other NFS clients or by some CSI drivers.
        self.poll_ms = poll_ms
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self.generation = 0  # completed reloads

    async def reload_now(self) -> None:
        """Rebuild until the files stop changing under the build (bounded)."""
        root = self.registry.root
        for _ in range(5):
            before = await asyncio.to_thread(fingerprint, root)
            await self.registry.reload()
            after = await asyncio.to_thread(fingerprint, root)
            if before == after:
                break
        self._seen = after
        self.generation += 1

    def start(self) -> None:
        run = self._poll if self.poll_ms > 0 else self._run
        self._task = asyncio.create_task(run(), name="rules-watcher")
        if self.poll_ms <= 0:
            self._reconciler = asyncio.create_task(self._reconcile(), name="rules-reconcile")

    async def _reconcile(self) -> None:
        """The safety net under inotify: reload if the tree differs from the last reload's."""
        root = self.registry.root
        wait = RECONCILE_FIRST_S
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            wait = RECONCILE_EVERY_S
            try:
                if await asyncio.to_thread(fingerprint, root) != self._seen:
                    log.info("rules directory changed without a watch event; reloading")
                    await self.reload_now()
                await self._refresh_expired()
            except Exception:
                log.exception("rules reconcile failed; trying again")

    async def _poll(self) -> None:
        """Compare the tree's fingerprint with the one the last reload saw. (watchfiles'
        own polling takes its first snapshot only once its thread runs, so an edit made
        between the start-up load and that snapshot would never be seen.)"""
        root = self.registry.root
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_ms / 1000):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                if await asyncio.to_thread(fingerprint, root) != self._seen:
                    log.info("rules directory changed (polled); reloading")
                    await self.reload_now()
                await self._refresh_expired()
            except Exception:
                log.exception("rules poller failed; trying again")

    async def _refresh_expired(self) -> None:
        """Rebuild the tenants whose lists have rows that expired since they were built:
        no file changed, but the list they hold is no longer the list the file says."""
        due = self.registry.refresh_due(time.time())
        if due:
            log.info("list rows expired; rebuilding", extra={"tenants": due})
            await self.registry.reload(due)

    async def _run(self) -> None:
        root = self.registry.root
        while not self._stop.is_set():
            # The watch is on the directory `root` leads to now. When `root` (or a folder
            # above it) is a symlink swapped for another (`mv -T`, a deploy tool's release
            # switch), the old target may never change again: `moved` ends this watch
            # and the rules are reloaded from, and watched at, the new target.
            target = await asyncio.to_thread(os.path.realpath, root)
            moved = asyncio.Event()
            follower = asyncio.create_task(self._follow(root, target, moved))
            try:
                async for _changes in awatch(
                    root,
                    debounce=self.debounce_ms,
                    step=50,
                    stop_event=moved,
                    recursive=True,
                    force_polling=False,
                ):
                    log.info("rules directory changed; reloading")
                    await self.reload_now()
            except FileNotFoundError:
                # The rules dir itself is being replaced; look again shortly.
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("rules watcher failed; restarting it")
                await asyncio.sleep(1.0)
            finally:
                follower.cancel()
            if moved.is_set() and not self._stop.is_set():
                log.info("rules directory now leads to another folder; reloading")
                await self.reload_now()

    async def _follow(self, root: Path, target: str, moved: asyncio.Event) -> None:
        """Set ``moved`` when ``root`` resolves to another folder than ``target``, or on stop."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), FOLLOW_SYMLINK_S)
            if self._stop.is_set() or await asyncio.to_thread(os.path.realpath, root) != target:
                moved.set()
                return

    async def stop(self) -> None:
        self._stop.set()
        for task in (self._task, self._reconciler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
