"""The operator's named state backends, and which tenants may pick each one.

A tenant's folder never names a host: ``tenant.toml`` picks a *name* (``state =
"acme-redis"``) and the operator decides what the name means and who may use it:

* ``--state-backend NAME=URL`` (repeatable; ``RINGFENCE_STATE_BACKENDS``, whitespace
  separated) for URLs without credentials;
* every file of ``--state-secrets-dir`` is a backend named after the file, holding its
  URL (a mounted Secret: passwords stay out of flags, values and the rules);
* ``--state-backend-tenants NAME=TENANT,TENANT`` (``*``: every tenant) offers a backend.
  A backend nobody is offered is unused; a name a tenant was not offered is refused when
  its policy loads (the tenant keeps its last good policy) and again on every request.

Memory backends are named the same way: a tenant can no longer make one per name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from server.bundle.tenant_config import BACKEND_NAME, FILE_NAME, TENANT_NAME
from server.urls import has_control_characters

if TYPE_CHECKING:
    from server.bundle.load import TenantBundle

STATE_SCHEMES = (
    "memory://",
    "redis://",
    "rediss://",
    "unix://",
    "redis+cluster://",
    "rediss+cluster://",
)
EVERY_TENANT = "*"
# A URL file is one line; anything bigger is not a URL.
MAX_URL_FILE = 64 * 1024


class CatalogError(ValueError):
    """An operator mistake in the backend flags or files; never quotes a URL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NamedBackend:
    name: str
    url: str = field(repr=False)  # may carry a password
    origin: str  # where it was given, for messages: a flag or a file path
    tenants: frozenset[str] = frozenset()  # {"*"}: every tenant

    def offered_to(self, tenant: str) -> bool:
        return EVERY_TENANT in self.tenants or tenant in self.tenants


@dataclass(frozen=True, slots=True)
class BackendCatalog:
    backends: Mapping[str, NamedBackend] = field(default_factory=lambda: MappingProxyType({}))

    def names_for(self, tenant: str) -> list[str]:
        return sorted(n for n, b in self.backends.items() if b.offered_to(tenant))

    def refusal(self, tenant: str, name: str) -> str | None:
        """Why ``tenant`` may not use backend ``name``; None when it may. An unknown name
        and one offered to others get the same answer, so a tenant cannot probe for the
        names of other tenants' backends."""
        backend = self.backends.get(name)
        if backend is not None and backend.offered_to(tenant):
            return None
        offered = self.names_for(tenant)
        choice = f"the ones it may use: {', '.join(offered)}" if offered else "it has none"
        return (
            f"state backend {name!r} is not one the operator offers tenant {tenant!r} ({choice});"
            " the operator offers a backend with --state-backend-tenants NAME=TENANT"
        )

    def admission_error(self, root: Path, bundle: TenantBundle) -> str | None:
        """``path:line:col: error: ...`` when a tenant's tenant.toml picks a backend it was
        not offered; None when it may load."""
        config = bundle.config
        if not config.state:
            return None
        refusal = self.refusal(bundle.name, config.state)
        if refusal is None:
            return None
        line, column = config.state_place
        return f"{root / bundle.name / FILE_NAME}:{line}:{column}: error: {refusal}"

    def unused(self) -> list[str]:
        return sorted(n for n, b in self.backends.items() if not b.tenants)


def check_state_url(url: str, where: str) -> None:
    """Raise CatalogError for a URL the state factory would not take, naming ``where``."""
    if not url.startswith(STATE_SCHEMES):
        raise CatalogError(
            f"{where}: expected memory://, redis://HOST:PORT/DB, rediss://, unix:///PATH or "
            "redis+cluster://HOST:PORT,..."
        )
    if has_control_characters(url):
        raise CatalogError(
            f"{where}: the URL holds a control character (CR, LF, NUL, ...; percent-encoded "
            "ones count too)"
        )


def split_pairs(values: Iterable[str]) -> list[str]:
    """Flag values given once each, or one variable holding several separated by
    whitespace (a URL never holds raw whitespace)."""
    return [item for value in values for item in value.split()]


def build_catalog(
    specs: Iterable[str], grants: Iterable[str], secrets_dir: Path | None = None
) -> BackendCatalog:
    """The catalog from ``NAME=URL`` specs, the files of ``secrets_dir`` and
    ``NAME=TENANT,...`` grants; CatalogError names the first mistake."""
    found: dict[str, tuple[str, str]] = {}  # name -> (url, origin)
    for spec in specs:
        name, sep, url = spec.partition("=")
        origin = f"--state-backend {name}"
        if not sep or not url:
            raise CatalogError(f"--state-backend: expected NAME=URL, got {name[:60]!r}=...")
        _check_name(name, "--state-backend")
        check_state_url(url, origin)
        if name in found:
            raise CatalogError(f"{origin}: the name is given twice")
        found[name] = (url, origin)
    if secrets_dir is not None:
        for name, url, origin in _read_dir(secrets_dir):
            if name in found:
                raise CatalogError(f"{origin}: backend {name!r} is also given as {found[name][1]}")
            found[name] = (url, origin)
    offered: dict[str, set[str]] = {}
    for grant in grants:
        name, sep, who = grant.partition("=")
        if not sep or not who:
            raise CatalogError(
                f"--state-backend-tenants: expected NAME=TENANT[,TENANT...] or NAME=*, got "
                f"{grant[:80]!r}"
            )
        if name not in found:
            raise CatalogError(f"--state-backend-tenants: no state backend is named {name[:60]!r}")
        tenants = offered.setdefault(name, set())
        for tenant in who.split(","):
            if tenant != EVERY_TENANT and not TENANT_NAME.fullmatch(tenant):
                raise CatalogError(
                    f"--state-backend-tenants {name}: {tenant[:60]!r} is not a tenant name"
                )
            tenants.add(tenant)
    return BackendCatalog(
        MappingProxyType(
            {
                name: NamedBackend(
                    name=name, url=url, origin=origin, tenants=frozenset(offered.get(name, ()))
                )
                for name, (url, origin) in sorted(found.items())
            }
        )
    )


def _check_name(name: str, what: str) -> None:
    if not BACKEND_NAME.fullmatch(name):
        raise CatalogError(
            f"{what}: {name[:60]!r} is not a backend name (letters, digits, '.', '_', '-'; "
            "at most 63; not starting with a dot)"
        )


def _read_dir(directory: Path) -> list[tuple[str, str, str]]:
    """``(name, url, origin)`` for each file. Dot-entries are skipped: a mounted Secret
    keeps its real files in ``..data`` and links each key to them."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise CatalogError(f"--state-secrets-dir {directory}: {exc.strerror or exc}") from None
    out: list[tuple[str, str, str]] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        origin = f"state backend file {path}"
        _check_name(entry.name, origin)
        try:
            if not path.is_file():
                raise CatalogError(f"{origin}: not a regular file")
            with path.open("rb") as f:
                raw = f.read(MAX_URL_FILE + 1)
        except OSError as exc:
            raise CatalogError(f"{origin}: cannot read it ({exc.strerror or exc})") from None
        if len(raw) > MAX_URL_FILE:
            raise CatalogError(f"{origin}: larger than {MAX_URL_FILE} bytes, no URL")
        try:
            url = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CatalogError(f"{origin}: not UTF-8") from None
        check_state_url(url, origin)
        out.append((entry.name, url, origin))
    return out
