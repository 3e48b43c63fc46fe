"""Loading one tenant's bundle: policy files + lists + tenant.toml -> an immutable value.

Everything that can fail happens here, off the request path and (when reloading) off the
event loop. A bundle is either complete or not built at all: the caller keeps serving the
previous one when :class:`BundleError` is raised.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

from dsl import CompiledPolicy, CompileOptions, ListDecl, PolicyError, load_policy
from dsl.diagnostics import Diagnostic, Severity, render
from dsl.lists import ListView, label_problems, list_kinds, list_use_problems
from dsl.runtime import EMPTY_LIST
from dsl.zones import zone as tz_zone
from server.bundle.budget import EvaluationBudget
from server.bundle.compiling import InProcessCompiler, PolicyCompiler
from server.bundle.files import (
    MAX_LIST_FILE,
    MAX_POLICY_FILE,
    FileRefused,
    confined_dir,
    list_files,
    read_confined,
    real,
    within,
)
from server.bundle.tenant_config import FILE_NAME as TENANT_TOML
from server.bundle.tenant_config import TenantConfig, TenantConfigError, load_tenant_config
from server.lists import ListLoadError, LoadedList, parse_list
from server.lists.loader import EXPIRES_COLUMN
from server.lists.pool import ListPool
from server.phone import PhoneParser

SHARED = "_shared"
# (state backend name, tenant, list) -> the view of a list kept in state.
StateLists = Callable[[str, str, str], ListView]
# The most of a failed build's rendered diagnostics kept (GetPolicyStatus.last_error, logs).
MAX_ERROR_TEXT = 16 * 1024
POLICY_SUFFIX = ".rf"


class BundleError(Exception):
    """Why a tenant's bundle could not be built: rendered diagnostics, one per entry."""

    def __init__(self, tenant: str, messages: list[str]) -> None:
        super().__init__(f"tenant {tenant!r}: {len(messages)} error(s)")
        self.tenant = tenant
        self.messages = tuple(messages)

    def text(self) -> str:
        """Every message, within MAX_ERROR_TEXT: the text goes into GetPolicyStatus and the
        log, and one tenant's broken file must not make either too big for anyone."""
        out: list[str] = []
        size = 0
        for i, message in enumerate(self.messages):
            if size + len(message) > MAX_ERROR_TEXT:
                out.append(f"... and {len(self.messages) - i} more")
                break
            out.append(message)
            size += len(message) + 1
        return "\n".join(out)


@dataclass(frozen=True, slots=True)
class TenantBundle:
    name: str
    config: TenantConfig
    policy: CompiledPolicy
    lists: Mapping[str, ListView]
    version: str
    loaded_at: float
    # When a list row expires (the local midnight after the earliest `expires` date still
    # on a list): the bundle must be built again then, or the row would stay active.
    refresh_at: float | None = None

    @property
    def rule_count(self) -> int:
        return len(self.policy.rules)


def is_tenant_dir(path: Path) -> bool:
    """Tenant folders are plain names; ``_shared``, dot-folders and the ``..data`` /
    ``..2026_...`` entries of a Kubernetes ConfigMap mount are not tenants."""
    name = path.name
    return path.is_dir() and not name.startswith((".", "_"))


def read_sources(root: Path, tenant: str) -> tuple[dict[str, str], list[str]]:
    """``({"demo/policy.rf": text}, errors)`` for the .rf files directly in the tenant's
    folder; a file whose real path leaves that folder is an error, never read."""
    folder = root / tenant
    try:
        folder_real = confined_dir(folder, inside=real(root), what=f"tenant folder {tenant!r}")
    except FileRefused as exc:
        return {}, [f"{folder}: error: {exc}"]
    found = list_files(folder, POLICY_SUFFIX, recursive=False)
    return _read_texts(
        [(f"{tenant}/{f.name}", f) for f in found], inside=folder_real, fence="the tenant folder"
    )


def read_library(root: Path) -> tuple[dict[str, str], list[str]]:
    """``({"_shared/segments.rf": text}, errors)`` for every .rf file under ``_shared/``."""
    shared = root / SHARED
    if not shared.is_dir():
        return {}, []
    try:
        shared_real = confined_dir(shared, inside=real(root), what=SHARED)
    except FileRefused as exc:
        return {}, [f"{SHARED}: error: {exc}"]
    found = list_files(shared, POLICY_SUFFIX, recursive=True)
    return _read_texts(
        [(f"{SHARED}/{f.relative_to(shared).as_posix()}", f) for f in found],
        inside=shared_real,
        fence=f"{SHARED}/",
    )


def _read_texts(
    files: list[tuple[str, Path]], *, inside: Path, fence: str
) -> tuple[dict[str, str], list[str]]:
    texts: dict[str, str] = {}
    errors: list[str] = []
    for name, path in files:
        try:
            raw = read_confined(
                path, inside=inside, limit=MAX_POLICY_FILE, what="policy file", fence=fence
            )
        except FileRefused as exc:
            errors.append(f"{name}: error: {exc}")
            continue
        try:
            texts[name] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            errors.append(f"{name}:{line}: error: not valid UTF-8")
    return texts, errors


def _list_path(written: str) -> str | None:
    """The normalised path of a list declaration, or None when it would leave its folder:
    a tenant's own folder, or ``_shared/`` for paths that start with it."""
    if not written or written.startswith(("/", "\\")) or "\x00" in written:
        return None
    norm = posixpath.normpath(written)
    if written.startswith(f"{SHARED}/"):
        return norm if norm.startswith(f"{SHARED}/") else None
    if norm == ".." or norm.startswith("../") or norm == "." or norm.startswith(f"{SHARED}/"):
        return None
    return norm


class ListPathError(Exception):
    """A list declaration names no usable file; the message says why (never its content)."""


def _locate_list(
    root: Path, folder: Path, written: str, folder_real: Path, shared_real: Path | None
) -> tuple[Path, Path, str, str]:
    """(path, the real folder it must stay in, that folder's name for people, the name
    the list's own errors use) of a declaration: the tenant's own folder, or ``_shared/``
    for paths that start with it."""
    norm = _list_path(written)
    if norm is None:
        raise ListPathError(
            f"list path {written!r} leaves the tenant folder: a list comes from the tenant's"
            f" own folder or from {SHARED}/"
        )
    if norm.startswith(f"{SHARED}/"):
        if shared_real is None:
            raise ListPathError(f"list file {written!r} not found")
        return root / norm, shared_real, f"{SHARED}/", norm
    return folder / norm, folder_real, "the tenant folder", f"{folder.name}/{norm}"


def _shared_dir(root: Path, root_real: Path) -> Path | None:
    try:
        return confined_dir(root / SHARED, inside=root_real, what=SHARED)
    except FileRefused:
        return None  # read_library says why, or there is no _shared/ at all


def find_list_file(root: Path, folder: Path, written: str) -> Path:
    """The file ``list NAME from "written"`` reads in tenant ``folder``, checked the way
    load_bundle checks it (the language server reports the same problems in the editor)."""
    root_real = real(root)
    try:
        folder_real = confined_dir(folder, inside=root_real, what="the tenant folder")
    except FileRefused as exc:
        raise ListPathError(str(exc)) from None
    shared_real = _shared_dir(root, root_real)
    path, inside, fence, _ = _locate_list(root, folder, written, folder_real, shared_real)
    target = real(path)
    if not within(target, inside):
        raise ListPathError(f"list file {written!r} leads outside {fence} (through a symlink)")
    if not target.is_file():
        raise ListPathError(f"list file {written!r} not found")
    return target


def tenant_budget(config: TenantConfig, costs: EvaluationBudget, tenant: str, path: str) -> int:
    """The evaluation budget of a tenant: its own choice within the operator's ceiling,
    else the operator's default. Raises BundleError at the setting past the ceiling."""
    budget = costs.for_tenant(config.cost_budget)
    if budget is None:
        line, col = config.cost_budget_place
        where = f"{path}:{line}:{col}" if line else path
        raise BundleError(
            tenant,
            [
                f"{where}: error: [limits] cost_budget {config.cost_budget:,} is above the"
                f" operator's ceiling of {costs.ceiling:,} (ringfence serve --cost-ceiling)"
            ],
        )
    return budget


def load_bundle(
    root: Path,
    tenant: str,
    parser: PhoneParser,
    compiler: PolicyCompiler | None = None,
    lists: ListPool | None = None,
    *,
    now: float | None = None,
    state_lists: StateLists | None = None,
    costs: EvaluationBudget | None = None,
) -> TenantBundle:
    """Read (confined to the tenant's folder and ``_shared/``), compile (with
    ``compiler``: the server's passes a worker pool with a budget), load lists (with
    ``lists``: the server's parses big ones in a process of their own), activate.
    ``now`` (default: the clock) says which list rows have expired; ``state_lists`` gives
    the view of a list kept in state (the server's mirror; offline tools have none, and
    such a list reads empty); ``costs`` is the operator's evaluation budget (default and
    ceiling)."""
    compiler = compiler or InProcessCompiler()
    folder = root / tenant
    if not folder.is_dir():
        raise BundleError(tenant, [f"{folder}: error: tenant folder not found"])
    root_real = real(root)
    try:
        folder_real = confined_dir(folder, inside=root_real, what=f"tenant folder {tenant!r}")
    except FileRefused as exc:
        raise BundleError(tenant, [f"{folder}: error: {exc}"]) from None
    digest = hashlib.sha256()
    try:
        config, config_raw = load_tenant_config(folder, inside=folder_real)
    except TenantConfigError as exc:
        raise BundleError(tenant, [str(exc)]) from None
    digest.update(b"tenant.toml\0" + config_raw + b"\0")
    sources, errors = read_sources(root, tenant)
    library, library_errors = read_library(root)
    errors.extend(library_errors)
    if errors:
        raise BundleError(tenant, errors)
    if not sources:
        raise BundleError(tenant, [f"{folder}: error: no {POLICY_SUFFIX} policy files"])
    for name, text in (*sorted(sources.items()), *sorted(library.items())):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    budget = tenant_budget(config, costs or EvaluationBudget(), tenant, str(folder / TENANT_TOML))
    try:
        options = CompileOptions(
            default_timezone=config.timezone or "UTC",
            tenant_timezone=config.timezone,
            cost_budget=budget,
        )
        artifact = compiler.build(sources, library=library, tenant=tenant, options=options)
    except PolicyError as exc:
        all_sources = {**library, **sources}
        raise BundleError(
            tenant, [render(d, all_sources.get(d.path, "")) for d in exc.diagnostics]
        ) from None
    policy = load_policy(artifact)

    found: dict[str, LoadedList] = {}
    kept_in_state: dict[str, ListView] = {}
    lists_parser = lists
    region = config.default_region or "CN"
    shared_real = _shared_dir(root, root_real)
    texts = {**library, **sources}
    # List rows expire by the tenant's calendar, like `today` windows.
    zone = tz_zone(config.timezone or "UTC") or ZoneInfo("UTC")
    today = datetime.fromtimestamp(time.time() if now is None else now, zone).date()

    def list_error(decl: ListDecl, message: str) -> str:
        # Rendered like a checker diagnostic: position, the declaring line and a caret.
        span = decl.span
        diag = Diagnostic(span.path, span.line, span.column, Severity.ERROR, message)
        return render(diag, texts.get(span.path, ""))

    for decl in policy.lists:
        if decl.from_state:
            kept_in_state[decl.name] = (
                EMPTY_LIST if state_lists is None else state_lists(config.state, tenant, decl.name)
            )
            continue
        try:
            path, inside, fence, label = _locate_list(
                root, folder, decl.path, folder_real, shared_real
            )
        except ListPathError as exc:
            errors.append(list_error(decl, str(exc)))
            continue
        try:
            raw = read_confined(
                path,
                inside=inside,
                limit=MAX_LIST_FILE,
                what=f"list file {decl.path!r}",
                fence=fence,
            )
            parse = lists_parser.parse if lists_parser is not None else parse_list
            found[decl.name] = parse(
                raw,
                label,
                name=decl.name,
                default_region=region,
                parser=parser,
                today=today,
            )
        except FileRefused as exc:
            errors.append(list_error(decl, str(exc)))
            continue
        except ListLoadError as exc:
            errors.extend(f"{i.path}:{i.line}: error: {i.message}" for i in exc.issues)
            continue
        # Three updates, not one concatenation: copying a 50 MB list holds the interpreter
        # (and so the event loop) for tens of milliseconds; hashing it does not.
        digest.update(decl.name.encode() + b"\0")
        digest.update(raw)
        digest.update(b"\0")
        if EXPIRES_COLUMN in found[decl.name].label_columns:
            # The same bytes hold other rows on another day: the day is part of the version.
            digest.update(b"as of " + today.isoformat().encode() + b"\0")
    columns = {name: index.label_columns for name, index in found.items()}
    errors.extend(
        render(d, texts.get(d.path, "")) for d in label_problems(policy.label_uses, columns)
    )
    errors.extend(
        render(d, texts.get(d.path, ""))
        for d in list_use_problems(policy.list_uses, list_kinds(found))
    )
    if errors:
        raise BundleError(tenant, errors)
    expiries = [i.next_expiry for i in found.values() if i.next_expiry is not None]
    refresh_at = None
    if expiries:
        day_after = min(expiries) + timedelta(days=1)
        refresh_at = datetime.combine(day_after, dtime(0), tzinfo=zone).timestamp()
    return TenantBundle(
        name=tenant,
        config=config,
        policy=policy,
        lists=MappingProxyType({**found, **kept_in_state}),
        version=digest.hexdigest()[:16],
        loaded_at=time.time(),
        refresh_at=refresh_at,
    )
