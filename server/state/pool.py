"""One state backend per name: the server's default (``--state``), plus the operator's named
backends (:mod:`server.state.catalog`) that tenants pick in tenant.toml (``state =
"NAME"``), so one tenant's failing Redis cannot touch another tenant's decisions.

The set of backends is the operator's, fixed at start: nothing a tenant writes opens a
new one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from server.state import StateBackend, StateError
from server.state.catalog import BackendCatalog


class BackendPool:
    def __init__(
        self,
        default: StateBackend,
        factory: Callable[[str], StateBackend],
        catalog: BackendCatalog | None = None,
    ) -> None:
        self.default = default
        self.catalog = catalog or BackendCatalog()
        self._factory = factory
        self._by_name: dict[str, StateBackend] = {}

    def backend_for(self, tenant: str, name: str) -> StateBackend:
        """The backend of a tenant's ``state`` setting; empty means the default. Raises
        StateError for a name the tenant was not offered (its fail_mode applies; the
        registry refuses such a tenant.toml before it is ever served)."""
        if not name:
            return self.default
        refusal = self.catalog.refusal(tenant, name)
        if refusal is not None:
            raise StateError(refusal)
        backend = self._by_name.get(name)
        if backend is None:
            # Opening is lazy (no connection until the first call), so this is cheap.
            backend = self._by_name[name] = self._factory(self.catalog.backends[name].url)
        return backend

    def all(self) -> list[StateBackend]:
        return [self.default, *self._by_name.values()]

    def named(self) -> list[tuple[str, StateBackend]]:
        """Each backend opened so far with its name for metrics: ``default``, or the name
        the operator gave it (never its URL, which may hold a password)."""
        return [("default", self.default), *self._by_name.items()]

    async def close(self) -> None:
        for backend in self.all():
            with contextlib.suppress(Exception):
                await backend.close()
