"""The checking process: runs the checker for the language server, one request at a time.

Checking a policy is CPU work whose cost the policy's author controls (constants can be
made huge, ``sustained`` multiplies aggregates), so it never runs in the server's own
process: the server sends a request here and, when no answer comes within its time budget,
kills this process and starts another. Memory is capped with RLIMIT_AS for the same
reason. Frames on stdin/stdout are a 4-byte big-endian length and a pickle; only the
language server, which started this process, writes to it.
"""

from __future__ import annotations

import pickle
import resource
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import BinaryIO

from dsl import CheckReport, CompileOptions, ast, check_policy_report
from dsl.diagnostics import Diagnostic
from dsl.lists import LabelUse, ListUse
from dsl.options import DEFAULT_COST_BUDGET
from server.lsp.chunks import ChunkCache

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True, slots=True)
class CheckRequest:
    tenant: str
    sources: dict[str, str]
    library: dict[str, str]
    timezone: str = "UTC"
    key: str = ""  # what the quick check remembers the last full check by
    quick: bool = False  # re-check only the rules that changed, when that is exact enough
    cost_budget: int = DEFAULT_COST_BUDGET  # the tenant's evaluation budget (dsl/cost.py)


@dataclass(frozen=True, slots=True)
class CheckReply:
    diagnostics: tuple[Diagnostic, ...] = ()
    failure: str = ""  # set when the checker itself failed (out of memory, a bug)
    quick: bool = False  # only changed rules were checked; a full check should follow
    # The lists the tenant declares (its files and the library files they import), so the
    # server can check list files without parsing the policy itself.
    lists: tuple[ast.ListDecl, ...] = ()
    # LIST.label("name") uses, checked by the server against the list files' headers.
    labels: tuple[LabelUse, ...] = ()
    # `phone in LIST` / `event.ip in LIST`, checked against what each list file holds.
    uses: tuple[ListUse, ...] = ()


@dataclass(frozen=True, slots=True)
class _FullCheck:
    """What the last full check of a key saw, by chunk, for the quick check to reuse."""

    request: CheckRequest
    decls: frozenset[int]  # chunks holding anything but rules
    rules: dict[int, tuple[str, ...]]  # rule chunk -> its rule names
    by_chunk: dict[int, tuple[Diagnostic, ...]]  # marked diagnostics
    seconds: float  # how long it took: a quick check only pays off for slow ones
    report: CheckReport  # what it counted against the policy-wide limits


# Past this many changed rule chunks a full check is about as quick.
QUICK_MAX_CHANGED = 64
# A tenant whose full check takes less than this is always checked in full.
QUICK_ABOVE_S = 0.1


def encode_frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def decode_frame(data: bytes) -> object:
    return pickle.loads(data)  # frames come only from our own worker / our own server


def write_frame(out: BinaryIO, obj: object) -> None:
    out.write(encode_frame(obj))
    out.flush()


def read_frame(src: BinaryIO) -> object | None:
    head = src.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = src.read(size)
    if len(data) < size:
        return None
    return decode_frame(data)


class Checker:
    """The worker's state: parsed chunks, and each key's last full check."""

    def __init__(
        self, quick_above_s: float = QUICK_ABOVE_S, options: CompileOptions | None = None
    ) -> None:
        self.cache = ChunkCache(with_symbols=False)
        self.full: dict[str, _FullCheck] = {}
        self.quick_above_s = quick_above_s
        self.options = options or CompileOptions()

    def check(self, req: CheckRequest) -> CheckReply:
        try:
            if req.quick:
                reply = self._quick(req)
                if reply is not None:
                    return reply
            return self._full(req)
        except MemoryError:
            return CheckReply(failure="checking this policy ran out of memory")
        except RecursionError:
            return CheckReply(failure="checking this policy nested too deeply")
        except Exception as exc:  # a checker bug: report it, keep serving the next request
            return CheckReply(failure=f"internal error while checking: {exc!r}")

    def _run(
        self, req: CheckRequest, keep: Callable[[int, ast.Item], bool] | None = None
    ) -> CheckReport:
        return check_policy_report(
            req.sources,
            library=req.library,
            tenant=req.tenant,
            options=replace(
                self.options,
                default_timezone=req.timezone or "UTC",
                tenant_timezone=req.timezone,
                cost_budget=req.cost_budget,
            ),
            parser=self.cache.module_parser(keep),
        )

    def _real(self, diags: Iterable[Diagnostic]) -> CheckReply:
        return CheckReply(
            tuple(sorted({self.cache.real(d) for d in diags}, key=Diagnostic.sort_key))
        )

    def _chunks(
        self, req: CheckRequest
    ) -> tuple[frozenset[int], dict[int, tuple[str, ...]]] | None:
        """Declaration chunks and rule chunks of every file, or None if one does not parse."""
        decls: set[int] = set()
        rules: dict[int, tuple[str, ...]] = {}
        for path, text in (*req.library.items(), *req.sources.items()):
            parsed = self.cache.parse(text, path)
            if parsed.errors:
                return None
            for chunk, _ in parsed.chunks:
                items = chunk.module.items if chunk.module else ()
                if items and all(isinstance(i, ast.Rule) for i in items):
                    rules[chunk.id] = tuple(i.name for i in items if isinstance(i, ast.Rule))
                elif items:
                    decls.add(chunk.id)
        return frozenset(decls), rules

    def _full(self, req: CheckRequest) -> CheckReply:
        started = time.perf_counter()
        report = self._run(req)
        diags = report.diagnostics
        seconds = time.perf_counter() - started
        chunks = self._chunks(req) if req.key else None
        if chunks is not None:
            by_chunk: dict[int, list[Diagnostic]] = {}
            attributed = True
            for d in diags:
                cid = self.cache.chunk_of(d)
                if cid is None:
                    attributed = False
                    break
                by_chunk.setdefault(cid, []).append(d)
            if attributed:
                self.full[req.key] = _FullCheck(
                    req,
                    chunks[0],
                    chunks[1],
                    {k: tuple(v) for k, v in by_chunk.items()},
                    seconds,
                    report,
                )
            else:
                self.full.pop(req.key, None)
        labels = tuple(replace(u, span=self.cache.real_span(u.span)) for u in report.label_uses)
        uses = tuple(replace(u, span=self.cache.real_span(u.span)) for u in report.list_uses)
        return replace(self._real(diags), lists=self._lists(req), labels=labels, uses=uses)

    def _lists(self, req: CheckRequest) -> tuple[ast.ListDecl, ...]:
        """List declarations in scope, with real spans (the files parse: they are cached)."""
        modules: dict[str, ast.Module] = {}
        for path, text in (*req.library.items(), *req.sources.items()):
            parsed = self.cache.parse(text, path)
            if parsed.ok:
                modules[path] = parsed.module()
        seen: set[str] = set()
        order: list[str] = []

        def visit(path: str) -> None:
            if path in seen or path not in modules:
                return
            seen.add(path)
            for item in modules[path].items:
                if isinstance(item, ast.Import):
                    visit(item.target)
            order.append(path)

        for path in req.sources:
            visit(path)
        return tuple(
            replace(item, span=self.cache.real_span(item.span))
            for path in order
            for item in modules[path].items
            if isinstance(item, ast.ListDecl)
        )

    def _quick(self, req: CheckRequest) -> CheckReply | None:
        """Check declarations and the changed rules only, and reuse the last full check's
        findings for everything else; None when that would not be exact.

        A rule's findings depend on the rule, on the declarations (consts, named conditions
        it inlines, lists, aggregates, settings: a ``score`` warns when no threshold is
        set), on which other rules share its name, and on policy-wide limits (rule count,
        aggregate windows, expression nodes, diagnostics shown). So: any declaration chunk
        changed (settings and conditions are declarations), a file does not parse, a changed
        rule's name is shared, or the policy could reach a limit -> None, and a full check
        answers. Warnings that depend on every rule (unused declarations) stay as the last
        full check found them until the full check that follows."""
        last = self.full.get(req.key)
        if last is None or last.seconds < self.quick_above_s or last.report.truncated:
            return None
        if (req.tenant, req.timezone, req.cost_budget) != (
            last.request.tenant,
            last.request.timezone,
            last.request.cost_budget,
        ):
            return None
        chunks = self._chunks(req)
        if chunks is None or chunks[0] != last.decls:
            return None
        decls, rules = chunks
        changed = {c for c in rules if c not in last.rules}
        removed = {c for c in last.rules if c not in rules}
        if not changed and not removed:  # only blank lines or comments moved: same findings
            return self._real(d for ds in last.by_chunk.values() for d in ds)
        if len(changed) > QUICK_MAX_CHANGED:
            return None
        # A rule name shared with another rule makes 'duplicate rule' findings move.
        names = Counter(n for ns in rules.values() for n in ns)
        touched = Counter(n for c in changed for n in rules[c])
        gone = {n for c in removed for n in last.rules[c]}
        # (a rule edited in place is both gone and touched: only other rules named so count)
        if any(names[n] > 1 for n in touched) or any(names[n] > touched[n] for n in gone):
            return None
        # 'too many rules' lands on whichever rule is one too many.
        if sum(names.values()) > self.options.max_rules:
            return None
        report = self._run(req, lambda cid, item: cid in changed or not isinstance(item, ast.Rule))
        diags = report.diagnostics
        if any(self.cache.chunk_of(d) is None for d in diags):
            return None
        # The policy-wide limits: the whole policy after the edit counts at most what the
        # last full check counted plus what the changed rules count (declarations are in
        # both), so below the limits that bound means no limit error anywhere.
        if (
            report.truncated
            or last.report.aggregate_windows + report.aggregate_windows
            > self.options.max_aggregate_reads
            or last.report.expression_nodes + report.expression_nodes
            > self.options.max_policy_nodes
            or self._may_cross_budget(req, last.report, report)
        ):
            return None
        out = [d for d in diags if self.cache.chunk_of(d) in changed]
        out += [d for c, ds in last.by_chunk.items() if c in decls or c in rules for d in ds]
        if len(out) >= self.options.max_diagnostics:  # the full check would cut the list
            return None
        return CheckReply(self._real(out).diagnostics, quick=True)

    @staticmethod
    def _may_cross_budget(req: CheckRequest, last: CheckReport, part: CheckReport) -> bool:
        """Whether the edited policy could be over its evaluation budget, which only a full
        check can say. Its declarations are the last full check's (the quick check needs
        that), and its rules cost at most the last ones and the changed ones together.
        A part with errors is never estimated, and neither is the whole then."""
        if req.cost_budget <= 0 or part.cost is None:
            return False
        if last.cost is None:
            return True
        return last.cost.total + part.cost.total - part.cost.aggregates > req.cost_budget


READY = b"\x01"  # written once the process can check: the server starts its clock after it


def main(argv: list[str]) -> int:
    memory_mb = int(argv[0]) if argv else 0
    if memory_mb > 0:
        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    src, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the frames
    checker = Checker()
    # Started and imported: from here on, the server's budget counts the checks alone.
    out.write(READY)
    out.flush()
    while True:
        req = read_frame(src)
        if not isinstance(req, CheckRequest):
            return 0
        try:
            write_frame(out, checker.check(req))
        except BrokenPipeError:  # the server went away (or killed us): nothing to answer
            return 0


if __name__ == "__main__":
    # Run main() from the imported module, not __main__, so the classes the server pickles
    # (server.lsp.worker.CheckRequest) are the ones isinstance() sees here.
    from server.lsp import worker

    sys.exit(worker.main(sys.argv[1:]))
