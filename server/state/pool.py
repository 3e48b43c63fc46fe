"""One state backend per distinct URL: the server's default, plus any a tenant names in its
tenant.toml (``state = "redis://..."``) so that one tenant's failing Redis cannot touch
another tenant's decisions.

A tenant may name a secret instead (``state_secret = "NAME"``, held as ``secret:NAME``):
the URL is then read from the file NAME in the server's secrets directory (a mounted
Secret), once, so passwords never sit in the rules."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

from server.bundle.tenant_config import SECRET_NAME, SECRET_PREFIX
from server.state import StateBackend, StateError


def _label(url: str) -> str:
    if url.startswith(SECRET_PREFIX):
        return url
    # No user info (a password), no query; cluster URLs list several hosts.
    return re.sub(r"//[^@/]*@", "//", url.split("?", 1)[0])


class BackendPool:
    def __init__(
        self,
        default: StateBackend,
        factory: Callable[[str], StateBackend],
        secrets_dir: Path | None = None,
    ) -> None:
        self.default = default
        self._factory = factory
        self._secrets_dir = secrets_dir
        self._by_url: dict[str, StateBackend] = {}

    def for_url(self, url: str) -> StateBackend:
        """The backend for a tenant's ``state`` setting; empty means the default. Raises
        StateError for a secret that cannot be read (the tenant's fail_mode applies)."""
        if not url:
            return self.default
        backend = self._by_url.get(url)
        if backend is None:
            if url.startswith(SECRET_PREFIX):
                backend = self._by_url[url] = self._factory(self._secret(url))
                return backend
            # Opening is lazy (no connection until the first call), so this is cheap.
            backend = self._by_url[url] = self._factory(url)
        return backend

    def _secret(self, ref: str) -> str:
        name = ref.removeprefix(SECRET_PREFIX)
        if self._secrets_dir is None or not SECRET_NAME.fullmatch(name):
            raise StateError(f"state secret {name!r}: the server has no --state-secrets-dir")
        try:
            url = (self._secrets_dir / name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"state secret {name!r} cannot be read: {exc}") from None
        if not url.startswith(("redis://", "rediss://", "unix://", "memory://")):
            # Never quote the content: it is a secret even when it is not a URL.
            raise StateError(f"state secret {name!r} does not hold a redis:// URL")
        return url

    def all(self) -> list[StateBackend]:
        return [self.default, *self._by_url.values()]

    def named(self) -> list[tuple[str, StateBackend]]:
        """Each backend with a name for metrics: ``default``, ``secret:NAME``, or the URL
        without its credentials."""
        return [("default", self.default), *((_label(u), b) for u, b in self._by_url.items())]

    async def close(self) -> None:
        for backend in self.all():
            with contextlib.suppress(Exception):
                await backend.close()
