"""One state backend per distinct URL: the server's default, plus any a tenant names in its
tenant.toml (``state = "redis://..."``) so that one tenant's failing Redis cannot touch
another tenant's decisions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from server.state import StateBackend


class BackendPool:
    def __init__(self, default: StateBackend, factory: Callable[[str], StateBackend]) -> None:
        self.default = default
        self._factory = factory
        self._by_url: dict[str, StateBackend] = {}

    def for_url(self, url: str) -> StateBackend:
        """The backend for a tenant's ``state`` setting; empty means the default."""
        if not url:
            return self.default
        backend = self._by_url.get(url)
        if backend is None:
            # Opening is lazy (no connection until the first call), so this is cheap.
            backend = self._by_url[url] = self._factory(url)
        return backend

    def all(self) -> list[StateBackend]:
        return [self.default, *self._by_url.values()]

    async def close(self) -> None:
        for backend in self.all():
            with contextlib.suppress(Exception):
                await backend.close()
