"""Loading one tenant's bundle: policy files + lists + tenant.toml -> an immutable value.

Everything that can fail happens here, off the request path and (when reloading) off the
event loop. A bundle is either complete or not built at all: the caller keeps serving the
previous one when :class:`BundleError` is raised.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from dsl import CompiledPolicy, CompileOptions, PolicyError, compile_policy
from dsl.diagnostics import render
from dsl.lists import ListView
from server.bundle.tenant_config import TenantConfig, TenantConfigError, load_tenant_config
from server.lists import ListLoadError, load_list
from server.phone import PhoneParser

SHARED = "_shared"
POLICY_SUFFIX = ".rf"


class BundleError(Exception):
    """Why a tenant's bundle could not be built: rendered diagnostics, one per entry."""

    def __init__(self, tenant: str, messages: list[str]) -> None:
        super().__init__(f"tenant {tenant!r}: {len(messages)} error(s)")
        self.tenant = tenant
        self.messages = tuple(messages)

    def text(self) -> str:
        return "\n".join(self.messages)


@dataclass(frozen=True, slots=True)
class TenantBundle:
    name: str
    config: TenantConfig
    policy: CompiledPolicy
    lists: Mapping[str, ListView]
    version: str
    loaded_at: float

    @property
    def rule_count(self) -> int:
        return len(self.policy.rules)


def is_tenant_dir(path: Path) -> bool:
    """Tenant folders are plain names; ``_shared``, dot-folders and the ``..data`` /
    ``..2026_...`` entries of a Kubernetes ConfigMap mount are not tenants."""
    name = path.name
    return path.is_dir() and not name.startswith((".", "_"))


def read_sources(root: Path, folder: Path) -> dict[str, str]:
    """``{"demo/policy.rf": text}`` for the .rf files directly in ``folder``."""
    out: dict[str, str] = {}
    for file in sorted(folder.glob(f"*{POLICY_SUFFIX}")):
        if file.is_file():
            out[file.relative_to(root).as_posix()] = file.read_text(encoding="utf-8")
    return out


def read_library(root: Path) -> dict[str, str]:
    shared = root / SHARED
    if not shared.is_dir():
        return {}
    return {
        f.relative_to(root).as_posix(): f.read_text(encoding="utf-8")
        for f in sorted(shared.rglob(f"*{POLICY_SUFFIX}"))
        if f.is_file()
    }


def _resolve_list(root: Path, folder: Path, written: str) -> Path | None:
    """The list file a declaration names, or None when it points outside the rules dir."""
    base = root if written.startswith(f"{SHARED}/") else folder
    candidate = (base / written).resolve()
    if not candidate.is_relative_to(root.resolve()):
        return None
    return candidate


class ListPathError(Exception):
    """A list declaration names no usable file; the message says why."""


def find_list_file(root: Path, folder: Path, written: str) -> Path:
    """The file ``list NAME from "written"`` reads in tenant ``folder``; the language
    server reports the same problems at the declaration."""
    path = _resolve_list(root, folder, written)
    if path is None:
        raise ListPathError(f"list path {written!r} leaves the rules directory")
    if not path.is_file():
        raise ListPathError(f"list file {written!r} not found")
    return path


def load_bundle(root: Path, tenant: str, parser: PhoneParser) -> TenantBundle:
    folder = root / tenant
    if not folder.is_dir():
        raise BundleError(tenant, [f"{folder}: error: tenant folder not found"])
    digest = hashlib.sha256()
    try:
        config, config_raw = load_tenant_config(folder)
    except TenantConfigError as exc:
        raise BundleError(tenant, [str(exc)]) from None
    digest.update(b"tenant.toml\0" + config_raw + b"\0")
    try:
        sources = read_sources(root, folder)
        library = read_library(root)
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(tenant, [f"{folder}: error: cannot read policy files: {exc}"]) from None
    if not sources:
        raise BundleError(tenant, [f"{folder}: error: no {POLICY_SUFFIX} policy files"])
    for name, text in (*sorted(sources.items()), *sorted(library.items())):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    try:
        options = CompileOptions(default_timezone=config.timezone or "UTC")
        policy = compile_policy(sources, library=library, tenant=tenant, options=options)
    except PolicyError as exc:
        all_sources = {**library, **sources}
        raise BundleError(
            tenant, [render(d, all_sources.get(d.path, "")) for d in exc.diagnostics]
        ) from None

    lists: dict[str, ListView] = {}
    errors: list[str] = []
    region = config.default_region or "CN"
    for decl in policy.lists:
        where = f"{decl.span.path}:{decl.span.line}:{decl.span.column}"
        try:
            path = find_list_file(root, folder, decl.path)
        except ListPathError as exc:
            errors.append(f"{where}: error: {exc}")
            continue
        try:
            raw = path.read_bytes()
            lists[decl.name] = load_list(path, name=decl.name, default_region=region, parser=parser)
        except ListLoadError as exc:
            errors.extend(f"{i.path}:{i.line}: error: {i.message}" for i in exc.issues)
            continue
        except OSError as exc:
            errors.append(f"{where}: error: cannot read list {decl.path!r}: {exc}")
            continue
        digest.update(decl.name.encode() + b"\0" + raw + b"\0")
    if errors:
        raise BundleError(tenant, errors)
    return TenantBundle(
        name=tenant,
        config=config,
        policy=policy,
        lists=MappingProxyType(lists),
        version=digest.hexdigest()[:16],
        loaded_at=time.time(),
    )
