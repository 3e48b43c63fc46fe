"""The rules folders an editor has open: files on disk overlaid with unsaved buffers.

A ``.rf`` file belongs to a rules root and either to one tenant (``ROOT/<tenant>/x.rf``) or
to the shared library (``ROOT/_shared/...``). Reading goes through the same helpers the
server uses (``server.bundle.load``), so the editor sees the tenant as ``ringfence check``
and a reload would. Not thread-safe: the language server calls it from its event loop or
from its one analysis thread, never both at once for the same object.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dsl.symbols import FileSymbols, Scope, import_closure
from server.bundle.load import POLICY_SUFFIX, SHARED, read_library, read_sources
from server.bundle.tenant_config import FILE_NAME as TENANT_TOML
from server.lsp.chunks import ChunkCache, ParsedFile

# A file larger than this is not analysed in the editor (``ringfence check`` still does).
MAX_FILE_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class Place:
    """Where a file sits: its rules root, its path as the checker names it
    (``demo/policy.rf``, ``_shared/segments.rf``), and its tenant ("" for the library)."""

    root: Path
    rel: str
    tenant: str

    @property
    def library(self) -> bool:
        return not self.tenant

    @property
    def path(self) -> Path:
        return self.root / self.rel


def place_of(path: Path, rules_root: Path | None = None) -> Place | None:
    """The place of a ``.rf`` or ``tenant.toml`` file, or None outside any rules layout."""
    path = Path(os.path.abspath(path))
    if rules_root is not None:
        root = Path(os.path.abspath(rules_root))
        if not path.is_relative_to(root):
            return None
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            return None
        tenant = "" if parts[0] == SHARED else parts[0]
        return Place(root, "/".join(parts), tenant)
    for i, parent in enumerate(path.parents):
        if parent.name == SHARED:
            root = parent.parent
            return Place(root, path.relative_to(root).as_posix(), "")
        if i > 8:
            break
    folder = path.parent  # ROOT/<tenant>/policy.rf or ROOT/<tenant>/tenant.toml
    if not folder.name or folder.name.startswith((".", "_")):
        return None
    root = folder.parent
    return Place(root, path.relative_to(root).as_posix(), folder.name)


@dataclass
class RulesWorkspace:
    """Every rules root seen so far, with the open buffers and the parsed files."""

    rules_root: Path | None = None
    overlay: dict[Path, str] = field(default_factory=dict)  # absolute path -> unsaved text
    parser: ChunkCache = field(default_factory=ChunkCache)
    _parsed: dict[Path, tuple[ParsedFile, FileSymbols]] = field(default_factory=dict)

    # -- text ---------------------------------------------------------------------------------

    def text(self, path: Path) -> str | None:
        if path in self.overlay:
            return self.overlay[path]
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return None
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def place(self, path: Path) -> Place | None:
        return place_of(path, self.rules_root)

    # -- tenants and files ---------------------------------------------------------------------

    def tenant_sources(self, root: Path, tenant: str) -> dict[str, str]:
        """``{"demo/policy.rf": text}``: the tenant's files, unsaved buffers first."""
        folder = root / tenant
        # Read inside the tenant's walls, as the server does; files it refuses are reported
        # by the loader's own check (ringfence check), not here.
        out: dict[str, str] = read_sources(root, tenant)[0] if folder.is_dir() else {}
        for path, text in self.overlay.items():
            if path.suffix == POLICY_SUFFIX and path.parent == folder:
                out[path.relative_to(root).as_posix()] = text
        return {k: v for k, v in sorted(out.items()) if len(v) <= MAX_FILE_BYTES}

    def library_sources(self, root: Path) -> dict[str, str]:
        out = read_library(root)[0]
        shared = root / SHARED
        for path, text in self.overlay.items():
            if path.suffix == POLICY_SUFFIX and path.is_relative_to(shared):
                out[path.relative_to(root).as_posix()] = text
        return {k: v for k, v in sorted(out.items()) if len(v) <= MAX_FILE_BYTES}

    def tenants(self, root: Path) -> list[str]:
        names: set[str] = set()
        if root.is_dir():
            for p in root.iterdir():
                if (
                    p.is_dir()
                    and not p.name.startswith((".", "_"))
                    and any(p.glob(f"*{POLICY_SUFFIX}"))
                ):
                    names.add(p.name)
        for path in self.overlay:
            place = self.place(path)
            if place is not None and place.root == root and place.tenant:
                names.add(place.tenant)
        return sorted(names)

    def tenant_toml(self, root: Path, tenant: str) -> tuple[Path, str | None]:
        path = root / tenant / TENANT_TOML
        return path, self.text(path) if (path in self.overlay or path.is_file()) else None

    # -- parsing and scopes --------------------------------------------------------------------

    def parsed(self, root: Path, rel: str, text: str) -> tuple[ParsedFile, FileSymbols]:
        path = root / rel
        cached = self._parsed.get(path)
        if cached is not None and cached[0].text == text:
            return cached
        result = self.parser.parse(text, rel)
        self._parsed[path] = (result, result.symbols())
        return self._parsed[path]

    def symbols(self, root: Path, sources: dict[str, str]) -> dict[str, FileSymbols]:
        return {rel: self.parsed(root, rel, text)[1] for rel, text in sources.items()}

    def tenant_scope(self, root: Path, tenant: str) -> tuple[Scope, dict[str, FileSymbols]]:
        sources = self.tenant_sources(root, tenant)
        library = self.library_sources(root)
        files = self.symbols(root, {**library, **sources})
        order = import_closure(files, sources)
        return Scope.of([files[p] for p in order]), files

    def library_scope(self, root: Path, rel: str) -> tuple[Scope, dict[str, FileSymbols]]:
        files = self.symbols(root, self.library_sources(root))
        return Scope.of([files[p] for p in import_closure(files, [rel])]), files

    def scopes_with(self, place: Place) -> list[tuple[str, Scope]]:
        """Every scope the file takes part in: its tenant's, or (for a library file) each
        tenant that imports it and the file's own."""
        if place.tenant:
            return [(place.tenant, self.tenant_scope(place.root, place.tenant)[0])]
        out: list[tuple[str, Scope]] = []
        for tenant in self.tenants(place.root):
            scope, _ = self.tenant_scope(place.root, tenant)
            if place.rel in scope.paths():
                out.append((tenant, scope))
        out.append(("", self.library_scope(place.root, place.rel)[0]))
        return out

    def importers(self, root: Path, rel: str) -> list[str]:
        """Tenants whose policy imports library file ``rel`` (directly or through others)."""
        return [t for t in self.tenants(root) if rel in self.tenant_scope(root, t)[0].paths()]

    def forget(self, paths: Iterable[Path]) -> None:
        for p in paths:
            self._parsed.pop(p, None)
