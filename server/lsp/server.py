"""``ringfence lsp``: the language server (pygls over stdio).

The event loop only talks LSP. Parsing and indexing run on one analysis thread (so the
loop keeps answering while a large file is parsed); checking runs in a worker process with
a time budget (see :mod:`server.lsp.checks`). Diagnostics for a file are the union of what
each check that covers it reported: its tenant's check, for a library file every importing
tenant's, plus list-file and tenant.toml problems found the way the server's loader does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path

from dsl import ast, reference, schema
from dsl.diagnostics import Diagnostic, PolicyError, Severity, Suggestion
from dsl.formatter import format_source
from dsl.lists import NETWORKS, NUMBERS, LabelUse, ListUse, label_problems, list_use_problems
from dsl.symbols import (
    RENAMABLE,
    Definition,
    FactUse,
    FileSymbols,
    Reference,
    Scope,
    SymbolKind,
    at,
    is_valid_name,
)
from server.bundle.budget import EvaluationBudget
from server.bundle.load import POLICY_SUFFIX, SHARED, ListPathError, find_list_file
from server.bundle.tenant_config import FILE_NAME as TENANT_TOML
from server.bundle.tenant_config import TenantConfigError, parse_tenant_config
from server.lists import ListLoadError, load_list
from server.lsp import features
from server.lsp.checks import CheckRunner
from server.lsp.worker import CheckReply, CheckRequest
from server.lsp.workspace import Place, RulesWorkspace

log = logging.getLogger("ringfence.lsp")
T = TypeVar("T")
SOURCE = "ringfence"
_LIB_CHECK = "#lsp-library-check.rf"
_CONFIG_POSITION = re.compile(r"^:(\d+):(\d+): error: ")


@dataclass(frozen=True, slots=True)
class LspOptions:
    debounce_s: float = 0.05
    budget_s: float = 10.0
    memory_mb: int = 2048
    rules_root: str = ""
    # The operator's evaluation budget, as ringfence check reads it (RINGFENCE_COST_*).
    costs: EvaluationBudget = field(default_factory=EvaluationBudget)


def to_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def to_uri(path: Path) -> str:
    return from_fs_path(str(path)) or path.as_uri()


@dataclass(frozen=True, slots=True)
class _ListInfo:
    file: Path
    entries: int
    columns: tuple[str, ...]
    kind: str = NUMBERS  # what the file holds: phone numbers or IP networks


class RingfenceServer(LanguageServer):
    def __init__(self, options: LspOptions) -> None:
        super().__init__("ringfence", "0.1.0")
        self.options = options
        root = Path(options.rules_root) if options.rules_root else None
        self.ws = RulesWorkspace(rules_root=root)
        self._extras_started: dict[str, int] = {}  # publish_extras calls begun, per key
        self.analysis = ThreadPoolExecutor(1, thread_name_prefix="ringfence-analysis")
        self.runner = CheckRunner(
            self._prepare,
            self._publish_check,
            debounce_s=options.debounce_s,
            budget_s=options.budget_s,
            memory_mb=options.memory_mb,
        )
        # uri -> owner -> diagnostics; an owner is a check key or "lists:KEY"/"config:KEY".
        self.diags: dict[str, dict[str, list[types.Diagnostic]]] = {}
        self.costs = options.costs
        self.lists: dict[Path, tuple[tuple[int, int], _ListInfo | ListLoadError]] = {}
        self.last_edited: dict[str, str] = {}  # check key -> rel path of the newest edit

    # -- plumbing -----------------------------------------------------------------------------

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.analysis, fn)

    def lines_of(self, path: Path) -> list[str]:
        text = self.ws.text(path)
        return (text or "").split("\n")

    def to_range(self, span: ast.Span | Diagnostic, lines: Sequence[str]) -> types.Range:
        line = max(span.line, 1) - 1
        col = max(span.column, 1) - 1
        end_line = span.end_line - 1 if span.end_line else line
        end_col = span.end_column - 1 if span.end_line else col
        if (end_line, end_col) < (line, col):
            end_line, end_col = line, col
        codec = self.workspace.position_codec
        start = codec.position_to_client_units(list(lines), types.Position(line, col))
        end = codec.position_to_client_units(list(lines), types.Position(end_line, end_col))
        return types.Range(start, end)

    def from_position(self, path: Path, pos: types.Position) -> tuple[int, int]:
        """A client position -> the checker's 1-based line and code-point column."""
        lines = self.lines_of(path)
        p = self.workspace.position_codec.position_from_client_units(lines, pos)
        return p.line + 1, p.character + 1

    def place(self, uri: str) -> Place | None:
        path = to_path(uri)
        return self.ws.place(path)

    @staticmethod
    def key(place: Place) -> str:
        return (
            f"T\x00{place.root}\x00{place.tenant}"
            if place.tenant
            else f"L\x00{place.root}\x00{place.rel}"
        )

    # -- which checks a change needs ------------------------------------------------------------

    def keys_for(self, place: Place) -> list[str]:
        if place.tenant:
            return [self.key(place)]
        importers = self.ws.importers(place.root, place.rel)
        keys = [f"T\x00{place.root}\x00{t}" for t in importers]
        return keys or [self.key(place)]

    async def changed(self, uri: str, *, now: bool = False, full: bool = False) -> None:
        path = to_path(uri)
        place = self.place(uri)
        if place is None:
            return
        if path.suffix == POLICY_SUFFIX and place.tenant:
            keys = [self.key(place)]  # without waiting for the analysis thread
        elif path.suffix == POLICY_SUFFIX:
            keys = await self.run(lambda: self.keys_for(place))
        elif path.name == TENANT_TOML and place.tenant:
            keys = [self.key(place)]
            # A quick check reuses the last full one's findings and reads no tenant.toml;
            # its problems (and the lists its region reads) come from a full check only.
            full = True
        else:
            return
        for k in keys:
            self.last_edited[k] = place.rel
            self.runner.request(k, now=now, full=full)

    async def list_file_changed(self, path: Path) -> None:
        """A saved list file: re-check the tenants whose lists read it."""
        self.lists.pop(path, None)
        for uri_map in list(self.diags.values()):
            for owner in list(uri_map):
                if owner.startswith("lists:"):
                    self.runner.request(owner.removeprefix("lists:"))

    # -- checking ---------------------------------------------------------------------------------

    async def _prepare(self, key: str) -> CheckRequest | None:
        """The newest sources for a check; read beside the analysis thread (which may be
        busy indexing) from a snapshot of the open buffers."""
        kind, root_s, name = key.split("\x00")
        root = Path(root_s)
        view = RulesWorkspace(rules_root=self.ws.rules_root, overlay=dict(self.ws.overlay))

        def build() -> CheckRequest:
            library = view.library_sources(root)
            if kind == "L":
                return CheckRequest("", {name + _LIB_CHECK: f'import "{name}"\n'}, library)
            sources = view.tenant_sources(root, name)
            tz = ""  # tenant.toml's, when it names one
            chosen = 0
            _, toml = view.tenant_toml(root, name)
            if toml is not None:
                with contextlib.suppress(TenantConfigError):
                    config = parse_tenant_config(toml, TENANT_TOML)
                    tz, chosen = config.timezone, config.cost_budget
            # As the server would load it: the tenant's own budget within the ceiling
            # (RINGFENCE_COST_BUDGET / _CEILING, as for ringfence check), else the default.
            budget = self.costs.for_tenant(chosen) or self.costs.default
            return CheckRequest(name, sources, library, tz, cost_budget=budget)

        return await asyncio.to_thread(build)

    async def _publish_check(
        self, key: str, req: CheckRequest, reply: CheckReply | None, failure: str
    ) -> None:
        kind, root_s, name = key.split("\x00")
        root = Path(root_s)
        by_path: dict[str, list[Diagnostic]] = {}
        for d in reply.diagnostics if reply else ():
            if d.path.endswith(_LIB_CHECK):
                continue
            by_path.setdefault(d.path, []).append(d)
        covered = list(req.sources) if kind == "T" else [name]
        if failure:
            where = self.last_edited.get(key) or (covered[-1] if covered else "")
            if where:
                by_path.setdefault(where, []).insert(
                    0, Diagnostic(where, 1, 1, Severity.ERROR, failure)
                )
        # Library files this check had findings in before and has none in now are cleared
        # by replace_owner, which drops the owner everywhere first.
        self.replace_owner(key, root, {p: by_path.get(p, []) for p in {*covered, *by_path}})
        if kind == "T" and reply is not None and not reply.quick:
            # Like the server's loader, lists are read only for a policy that compiles.
            compiles = not any(d.is_error for d in reply.diagnostics)
            await self.publish_extras(
                key, root, name, reply.lists if compiles else (), reply.labels, reply.uses
            )

    def replace_owner(self, owner: str, root: Path, by_path: dict[str, list[Diagnostic]]) -> None:
        touched: set[str] = set()
        for uri, owners in self.diags.items():
            if owner in owners:
                del owners[owner]
                touched.add(uri)
        for rel, diags in by_path.items():
            path = root / rel
            uri = to_uri(path)
            lines = self.lines_of(path)
            self.diags.setdefault(uri, {})[owner] = [self.lsp_diag(d, lines) for d in diags]
            touched.add(uri)
        for uri in touched:
            self.push(uri)

    def push(self, uri: str) -> None:
        merged: list[types.Diagnostic] = []
        seen: set[tuple[int, int, str]] = set()
        for diags in self.diags.get(uri, {}).values():
            for d in diags:
                k = (d.range.start.line, d.range.start.character, d.message)
                if k not in seen:
                    seen.add(k)
                    merged.append(d)
        merged.sort(key=lambda d: (d.range.start.line, d.range.start.character))
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=merged)
        )

    def lsp_diag(self, d: Diagnostic, lines: Sequence[str]) -> types.Diagnostic:
        data = None
        if d.suggestion is not None:
            data = {"original": d.suggestion.original, "replacement": d.suggestion.replacement}
        return types.Diagnostic(
            range=self.to_range(d, lines),
            message=d.message,
            severity=types.DiagnosticSeverity.Error
            if d.is_error
            else types.DiagnosticSeverity.Warning,
            source=SOURCE,
            data=data,
        )

    # -- lists and tenant.toml --------------------------------------------------------------------

    async def publish_extras(
        self,
        key: str,
        root: Path,
        tenant: str,
        lists: Sequence[ast.ListDecl],
        labels: Sequence[LabelUse] = (),
        uses: Sequence[ListUse] = (),
    ) -> None:
        def build() -> tuple[dict[str, list[Diagnostic]], dict[str, list[Diagnostic]]]:
            config: dict[str, list[Diagnostic]] = {f"{tenant}/{TENANT_TOML}": []}
            _, toml = self.ws.tenant_toml(root, tenant)
            region = "CN"
            if toml is not None:
                rel = f"{tenant}/{TENANT_TOML}"
                try:
                    region = parse_tenant_config(toml, "").default_region or "CN"
                except TenantConfigError as exc:
                    config[rel].append(_config_diag(rel, str(exc)))
            return config, self.list_problems(root, tenant, region, lists, labels, uses)

        # Checks run in threads and may finish out of order: only the latest one started
        # for this key publishes, so an older file's problems never replace a newer's.
        started = self._extras_started[key] = self._extras_started.get(key, 0) + 1
        config, problems = await asyncio.to_thread(build)
        if self._extras_started[key] != started:
            return
        self.replace_owner("config:" + key, root, config)
        self.replace_owner("lists:" + key, root, problems)

    def list_problems(
        self,
        root: Path,
        tenant: str,
        region: str,
        decls: Sequence[ast.ListDecl],
        labels: Sequence[LabelUse] = (),
        uses: Sequence[ListUse] = (),
    ) -> dict[str, list[Diagnostic]]:
        out: dict[str, list[Diagnostic]] = {}
        columns: dict[str, tuple[str, ...]] = {}
        kinds: dict[str, str] = {}
        for decl in decls:
            if decl.source != "file":
                continue  # kept in state: no file to read (the checker judges the word)
            info = self.list_info(root, tenant, decl, region)
            if isinstance(info, _ListInfo):
                columns[decl.name] = info.columns
                if info.kind == NETWORKS or info.entries:
                    kinds[decl.name] = info.kind
            if isinstance(info, str):
                out.setdefault(decl.span.path, []).append(
                    Diagnostic.at(decl.span, Severity.ERROR, info)
                )
            elif isinstance(info, ListLoadError):
                for issue in info.issues:
                    rel = Path(issue.path).resolve().relative_to(root.resolve()).as_posix()
                    line = max(issue.line, 1)
                    out.setdefault(rel, []).append(
                        Diagnostic(rel, line, 1, Severity.ERROR, issue.message, line, 1 << 16)
                    )
            else:
                out.setdefault(info.file.resolve().relative_to(root.resolve()).as_posix(), [])
        # As the server's loader does: every label a rule reads, against its list's header.
        for problem in label_problems(labels, columns):
            out.setdefault(problem.path, []).append(problem)
        for problem in list_use_problems(uses, kinds):
            out.setdefault(problem.path, []).append(problem)
        return out

    def list_info(
        self, root: Path, tenant: str, decl: ast.ListDecl, region: str = "CN"
    ) -> _ListInfo | ListLoadError | str:
        if decl.source == "state":
            return "kept in state: entries are added and removed on the server (ringfence list add)"
        folder = root / (tenant or "_shared")
        try:
            file = find_list_file(root, folder, decl.path)
        except ListPathError as exc:
            return str(exc)
        try:
            st = file.stat()
        except OSError as exc:
            return f"cannot read list {decl.path!r}: {exc}"
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self.lists.get(file)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        result: _ListInfo | ListLoadError
        try:
            index = load_list(file, name=decl.name, default_region=region)
            result = _ListInfo(file, len(index), tuple(index.label_columns), index.kind)
        except ListLoadError as exc:
            result = exc
        self.lists[file] = (stamp, result)
        return result

    # -- symbol look-ups ---------------------------------------------------------------------------

    def file_symbols(self, place: Place) -> FileSymbols | None:
        text = self.ws.text(place.path)
        if text is None:
            return None
        return self.ws.parsed(place.root, place.rel, text)[1]

    def scope_for(self, place: Place) -> Scope:
        if place.tenant:
            return self.ws.tenant_scope(place.root, place.tenant)[0]
        return self.ws.library_scope(place.root, place.rel)[0]

    def target_at(
        self, place: Place, line: int, col: int
    ) -> tuple[Definition | None, Reference | Definition | FactUse | None]:
        symbols = self.file_symbols(place)
        if symbols is None:
            return None, None
        hit = at(symbols, line, col)
        if isinstance(hit, Definition):
            if hit.kind in (SymbolKind.RULE, SymbolKind.SETTINGS):
                return hit, hit
            return self.scope_for(place).resolve(hit.name) or hit, hit
        if isinstance(hit, Reference):
            return self.scope_for(place).resolve(hit.name), hit
        return None, hit

    def all_references(self, place: Place, target: Definition) -> list[ast.Span]:
        """The declaration's name and every use, in every scope that sees it."""
        spans: dict[tuple[str, int, int], ast.Span] = {}
        def_place = _place_of_rel(place.root, target.span.path)
        for _, scope in self.ws.scopes_with(def_place):
            if scope.resolve(target.name) != target:
                continue
            for r in scope.references(scope.resolve(target.name) or target):
                spans[(r.span.path, r.span.line, r.span.column)] = r.span
        spans[(target.span.path, target.name_span.line, target.name_span.column)] = target.name_span
        return sorted(spans.values(), key=lambda s: (s.path, s.line, s.column))

    def location(self, root: Path, span: ast.Span) -> types.Location:
        path = root / span.path
        return types.Location(uri=to_uri(path), range=self.to_range(span, self.lines_of(path)))


def _place_of_rel(root: Path, rel: str) -> Place:
    first = rel.split("/", 1)[0]
    return Place(root, rel, "" if first == SHARED else first)


def _config_diag(rel: str, message: str) -> Diagnostic:
    """tenant.toml errors read ``PATH:LINE:COL: error: ...`` or ``PATH: error: ...``; the
    loader was given an empty path, so the message starts right after it."""
    m = _CONFIG_POSITION.match(message)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        return Diagnostic(rel, line, col, Severity.ERROR, message[m.end() :], line, col + 1)
    text = message.removeprefix(": error: ")
    return Diagnostic(rel, 1, 1, Severity.ERROR, text, 1, 1 << 16)


def _word_at(line_text: str, col: int) -> str:
    i = col - 1
    start = i
    while start > 0 and (line_text[start - 1].isalnum() or line_text[start - 1] == "_"):
        start -= 1
    end = i
    while end < len(line_text) and (line_text[end].isalnum() or line_text[end] == "_"):
        end += 1
    return line_text[start:end]


_COMPLETION_KINDS = {
    features.ItemKind.KEYWORD: types.CompletionItemKind.Keyword,
    features.ItemKind.FIELD: types.CompletionItemKind.Field,
    features.ItemKind.METHOD: types.CompletionItemKind.Method,
    features.ItemKind.FUNCTION: types.CompletionItemKind.Function,
    features.ItemKind.CONSTANT: types.CompletionItemKind.Constant,
    features.ItemKind.LIST: types.CompletionItemKind.Module,
    features.ItemKind.AGGREGATE: types.CompletionItemKind.Variable,
    features.ItemKind.CONDITION: types.CompletionItemKind.Variable,
    features.ItemKind.VALUE: types.CompletionItemKind.Value,
    features.ItemKind.UNIT: types.CompletionItemKind.Unit,
    features.ItemKind.MODULE: types.CompletionItemKind.Module,
}
_SYMBOL_KINDS = {
    SymbolKind.CONST: types.SymbolKind.Constant,
    SymbolKind.LIST: types.SymbolKind.Array,
    SymbolKind.AGGREGATE: types.SymbolKind.Variable,
    SymbolKind.CONDITION: types.SymbolKind.Boolean,
    SymbolKind.RULE: types.SymbolKind.Event,
    SymbolKind.SETTINGS: types.SymbolKind.Property,
}


def build_server(options: LspOptions) -> RingfenceServer:
    server = RingfenceServer(options)

    @server.feature(types.INITIALIZE)
    def initialize(ls: RingfenceServer, params: types.InitializeParams) -> None:
        opts = params.initialization_options
        if isinstance(opts, dict):
            root = opts.get("rulesRoot")
            if isinstance(root, str) and root:
                ls.ws.rules_root = Path(root)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: RingfenceServer, params: types.InitializedParams) -> None:
        await ls.runner.worker.start()  # warm it up while the editor opens files

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: RingfenceServer, params: types.DidOpenTextDocumentParams) -> None:
        path = to_path(params.text_document.uri)
        ls.ws.overlay[path] = params.text_document.text
        await ls.changed(params.text_document.uri, now=True)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls: RingfenceServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        path = to_path(uri)
        ls.ws.overlay[path] = ls.workspace.get_text_document(uri).source
        await ls.changed(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(ls: RingfenceServer, params: types.DidSaveTextDocumentParams) -> None:
        path = to_path(params.text_document.uri)
        if path.suffix in (POLICY_SUFFIX, ".toml"):
            await ls.changed(params.text_document.uri, now=True, full=True)
        else:
            await ls.list_file_changed(path)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(ls: RingfenceServer, params: types.DidCloseTextDocumentParams) -> None:
        path = to_path(params.text_document.uri)
        ls.ws.overlay.pop(path, None)
        await ls.changed(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    async def watched(ls: RingfenceServer, params: types.DidChangeWatchedFilesParams) -> None:
        for change in params.changes:
            path = to_path(change.uri)
            if path in ls.ws.overlay:
                continue
            if path.suffix in (POLICY_SUFFIX,) or path.name == TENANT_TOML:
                await ls.changed(change.uri)
            else:
                await ls.list_file_changed(path)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", " ", '"', "("]),
    )
    async def completion(
        ls: RingfenceServer, params: types.CompletionParams
    ) -> types.CompletionList | None:
        place = ls.place(params.text_document.uri)
        if place is None:
            return None
        line, col = ls.from_position(place.path, params.position)

        def build() -> list[features.Item]:
            text = ls.ws.text(place.path) or ""
            lines = text.split("\n")
            before = "\n".join(
                [*lines[: line - 1], lines[line - 1][: col - 1] if line <= len(lines) else ""]
            )
            scope = ls.scope_for(place)
            columns: dict[str, tuple[str, ...]] = {}
            if ".label(" in before[-200:]:
                for d in scope.definitions().values():
                    if d.kind is SymbolKind.LIST and isinstance(d.item, ast.ListDecl):
                        info = ls.list_info(place.root, place.tenant, d.item)
                        if isinstance(info, _ListInfo):
                            columns[d.name] = info.columns
            return features.complete(before, scope, columns)

        items = await ls.run(build)
        return types.CompletionList(
            is_incomplete=False,
            items=[
                types.CompletionItem(
                    label=i.label,
                    kind=_COMPLETION_KINDS.get(i.kind),
                    detail=i.detail or None,
                    documentation=types.MarkupContent(types.MarkupKind.Markdown, i.doc)
                    if i.doc
                    else None,
                    insert_text=i.insert,
                )
                for i in items
            ],
        )

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: RingfenceServer, params: types.HoverParams) -> types.Hover | None:
        place = ls.place(params.text_document.uri)
        if place is None:
            return None
        line, col = ls.from_position(place.path, params.position)

        def build() -> str | None:
            target, hit = ls.target_at(place, line, col)
            if isinstance(hit, FactUse):
                return features.hover_fact(hit.name)
            if target is not None:
                info = ""
                if target.kind is SymbolKind.LIST and isinstance(target.item, ast.ListDecl):
                    info = _list_hover(ls, place, target)
                return features.hover_definition(target, ls.scope_for(place), info)
            lines = ls.lines_of(place.path)
            if line <= len(lines):
                return features.hover_word(_word_at(lines[line - 1], col))
            return None

        text = await ls.run(build)
        if not text:
            return None
        return types.Hover(contents=types.MarkupContent(types.MarkupKind.Markdown, text))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    async def definition(
        ls: RingfenceServer, params: types.DefinitionParams
    ) -> list[types.Location] | None:
        place = ls.place(params.text_document.uri)
        if place is None:
            return None
        line, col = ls.from_position(place.path, params.position)

        def build() -> list[types.Location] | None:
            target, _ = ls.target_at(place, line, col)
            if target is not None:
                return [ls.location(place.root, target.name_span)]
            symbols = ls.file_symbols(place)
            for rel, span in symbols.imports if symbols else ():
                if span.line <= line <= span.end_line:
                    path = place.root / rel
                    if path.is_file() or path in ls.ws.overlay:
                        start = types.Position(0, 0)
                        return [types.Location(to_uri(path), types.Range(start, start))]
            return None

        return await ls.run(build)

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    async def references(
        ls: RingfenceServer, params: types.ReferenceParams
    ) -> list[types.Location] | None:
        place = ls.place(params.text_document.uri)
        if place is None:
            return None
        line, col = ls.from_position(place.path, params.position)

        def build() -> list[types.Location] | None:
            target, _ = ls.target_at(place, line, col)
            if target is None or target.kind in (SymbolKind.RULE, SymbolKind.SETTINGS):
                return None
            spans = ls.all_references(place, target)
            if not params.context.include_declaration:
                spans = [s for s in spans if s != target.name_span]
            return [ls.location(place.root, s) for s in spans]

        return await ls.run(build)

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    async def prepare_rename(
        ls: RingfenceServer, params: types.PrepareRenameParams
    ) -> types.PrepareRenamePlaceholder | None:
        place = ls.place(params.text_document.uri)
        if place is None:
            return None
        line, col = ls.from_position(place.path, params.position)

        def build() -> types.PrepareRenamePlaceholder | None:
            target, hit = ls.target_at(place, line, col)
            if target is None or target.kind not in RENAMABLE or hit is None:
                return None
            span = hit.name_span if isinstance(hit, Definition) else hit.span
            rng = ls.to_range(span, ls.lines_of(place.path))
            return types.PrepareRenamePlaceholder(range=rng, placeholder=target.name)

        return await ls.run(build)

    @server.feature(types.TEXT_DOCUMENT_RENAME)
    async def rename(ls: RingfenceServer, params: types.RenameParams) -> types.WorkspaceEdit | None:
        place = ls.place(params.text_document.uri)
        if place is None:
            return None
        line, col = ls.from_position(place.path, params.position)
        new = params.new_name

        def build() -> types.WorkspaceEdit | str | None:
            target, _ = ls.target_at(place, line, col)
            if target is None or target.kind not in RENAMABLE:
                return None
            reserved = {*reference.keywords().all, *schema.RESERVED}
            if not is_valid_name(new, reserved):
                return f"'{new}' is not a name a policy can declare"
            def_place = _place_of_rel(place.root, target.span.path)
            for _, scope in ls.ws.scopes_with(def_place):
                clash = scope.resolve(new)
                if clash is not None and new != target.name:
                    return (
                        f"'{new}' is already declared as a {clash.kind.value} at"
                        f" {clash.span.path}:{clash.span.line}"
                    )
            edits: dict[str, list[types.TextEdit]] = {}
            for span in ls.all_references(place, target):
                loc = ls.location(place.root, span)
                edits.setdefault(loc.uri, []).append(types.TextEdit(loc.range, new))
            return types.WorkspaceEdit(changes=edits)

        result = await ls.run(build)
        if isinstance(result, str):
            raise _RenameError(result)
        return result

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    async def document_symbol(
        ls: RingfenceServer, params: types.DocumentSymbolParams
    ) -> list[types.DocumentSymbol] | None:
        place = ls.place(params.text_document.uri)
        if place is None:
            return None

        def build() -> list[types.DocumentSymbol]:
            symbols = ls.file_symbols(place)
            if symbols is None:
                return []
            lines = ls.lines_of(place.path)
            return [
                types.DocumentSymbol(
                    name=d.name,
                    detail=features.describe(d) if d.kind is not SymbolKind.RULE else None,
                    kind=_SYMBOL_KINDS[d.kind],
                    range=ls.to_range(d.span, lines),
                    selection_range=ls.to_range(d.name_span, lines),
                )
                for d in symbols.outline()
            ]

        return await ls.run(build)

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    async def formatting(
        ls: RingfenceServer, params: types.DocumentFormattingParams
    ) -> list[types.TextEdit] | None:
        place = ls.place(params.text_document.uri)
        path = to_path(params.text_document.uri)
        text = ls.ws.text(path)
        if text is None:
            return None
        rel = place.rel if place else path.name

        def build() -> str | None:
            try:
                return format_source(text, rel)
            except PolicyError:
                return None  # the diagnostics already say why

        formatted = await ls.run(build)
        if formatted is None or formatted == text:
            return []
        lines = text.split("\n")
        end = types.Position(
            len(lines) - 1, ls.workspace.position_codec.client_num_units(lines[-1])
        )
        return [types.TextEdit(types.Range(types.Position(0, 0), end), formatted)]

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(
        ls: RingfenceServer, params: types.CodeActionParams
    ) -> list[types.CodeAction] | None:
        uri = params.text_document.uri
        path = to_path(uri)
        lines = ls.lines_of(path)
        stored = [d for ds in ls.diags.get(uri, {}).values() for d in ds]
        actions: list[types.CodeAction] = []
        for d in params.context.diagnostics:
            data = d.data
            if not isinstance(data, dict):  # the client dropped data: use what we sent
                data = next(
                    (s.data for s in stored if s.range == d.range and s.message == d.message),
                    None,
                )
            if not isinstance(data, dict):
                continue
            fix = Suggestion(str(data.get("original", "")), str(data.get("replacement", "")))
            edit = _fix_edit(ls, lines, d.range, fix)
            if edit is None:
                continue
            actions.append(
                types.CodeAction(
                    title=f"Change '{fix.original}' to '{fix.replacement}'",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[d],
                    is_preferred=True,
                    edit=types.WorkspaceEdit(changes={uri: [edit]}),
                )
            )
        return actions

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: RingfenceServer, params: None) -> None:
        await ls.runner.close()
        ls.analysis.shutdown(wait=False, cancel_futures=True)

    return server


class _RenameError(Exception):
    pass


def _list_hover(ls: RingfenceServer, place: Place, target: Definition) -> str:
    assert isinstance(target.item, ast.ListDecl)
    info = ls.list_info(place.root, _place_of_rel(place.root, target.span.path).tenant, target.item)
    if isinstance(info, str):
        return info
    if isinstance(info, ListLoadError):
        return f"cannot load: {len(info.issues)} problem(s), first: {info.issues[0]}"
    rel = info.file.resolve().relative_to(place.root.resolve()).as_posix()
    columns = ", ".join(info.columns) or "none"
    return f"file: {rel}\n\nentries: {info.entries}\n\nlabel columns: {columns}"


def _fix_edit(
    ls: RingfenceServer, lines: list[str], rng: types.Range, fix: Suggestion
) -> types.TextEdit | None:
    """Replace the last whole-word ``original`` inside ``rng``."""
    codec = ls.workspace.position_codec
    start = codec.position_from_client_units(lines, rng.start)
    end = codec.position_from_client_units(lines, rng.end)
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(fix.original)}(?![A-Za-z0-9_])")
    for ln in range(end.line, start.line - 1, -1):
        if ln >= len(lines):
            continue
        text = lines[ln]
        lo = start.character if ln == start.line else 0
        hi = end.character if ln == end.line else len(text)
        found = list(word.finditer(text, lo, max(lo, hi)))
        if found:
            m = found[-1]
            a = codec.position_to_client_units(lines, types.Position(ln, m.start()))
            b = codec.position_to_client_units(lines, types.Position(ln, m.end()))
            return types.TextEdit(types.Range(a, b), fix.replacement)
    return None


def serve_stdio(options: LspOptions) -> None:
    if os.environ.get("RINGFENCE_LSP_LOG"):
        logging.basicConfig(filename=os.environ["RINGFENCE_LSP_LOG"], level=logging.INFO)
    build_server(options).start_io()
