"""Edit-to-diagnostics latency of `ringfence lsp` on a 2,000-rule file, against
`ringfence check` on the same file (and the checker alone, in process), same run.

    .venv/bin/python bench/lsp_latency.py [--rules 2000] [--edits 20] [--broken]

An edit is a full-document change sent by a real LSP client over stdio; its latency ends
when the server publishes diagnostics that show it (each edit writes a different unknown
action, so no earlier result can be mistaken for it). Half the edits change a line in the
middle of the file, half also add a line at the top (every span below it moves). The
server's 50 ms debounce is included. Target: < 300 ms.

``--broken``: the file keeps a syntax error near the top while it is edited, and each edit
writes a different syntax error in the middle (the parser reports every one: after the
first error, each declaration is parsed on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BIN, machine, rules_copy
from bench.eval_ratio import generated_policy
from dsl import check_policy

TARGET_MS = 300.0


class Client(LanguageClient):
    def __init__(self) -> None:
        super().__init__("bench", "1")
        self.published: list[tuple[float, types.PublishDiagnosticsParams]] = []
        self.event = asyncio.Event()


async def wait_for(client: Client, uri: str, text: str, wait_s: float = 60.0) -> float:
    """When diagnostics for ``uri`` mentioning ``text`` arrived (perf_counter time)."""
    deadline = time.perf_counter() + wait_s
    seen = 0
    while True:
        for when, params in client.published[seen:]:
            if params.uri == uri and any(text in d.message for d in params.diagnostics):
                return when
        seen = len(client.published)
        client.event.clear()
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError(f"no diagnostics mentioning {text!r}")
        try:
            await asyncio.wait_for(client.event.wait(), left)
        except TimeoutError:
            continue


def _edit(broken: bool, k: int) -> tuple[str, str]:
    """The middle rule's `then` line for edit ``k``, and text its diagnostic shows."""
    if broken:
        return f"    then review {k}\n", f"number '{k}'"
    return f"    then blok{k}\n", f"'blok{k}'"


async def measure(
    path: Path, text: str, edits: int, broken: bool = False
) -> tuple[float, list[float], list[float]]:
    client = Client()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)  # type: ignore[untyped-decorator]
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        client.published.append((time.perf_counter(), params))
        client.event.set()

    await client.start_io(str(BIN / "ringfence"), "lsp")
    root = path.parent.parent
    await client.initialize_async(
        types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=root.as_uri())
    )
    client.initialized(types.InitializedParams())
    uri = path.as_uri()
    marker = "    then review\n"
    at = text.index(marker, len(text) // 2)
    line, shows = _edit(broken, 0)
    base = text[:at] + line + text[at + len(marker) :]
    start = time.perf_counter()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "ringfence", 1, base))
    )
    first = await wait_for(client, uri, shows) - start
    in_line: list[float] = []
    new_line: list[float] = []
    prefix = ""
    for k in range(1, edits + 1):
        if k % 2 == 0:
            prefix += "\n"
        line, shows = _edit(broken, k)
        body = prefix + text[:at] + line + text[at + len(marker) :]
        sent = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(k + 1, uri),
                [types.TextDocumentContentChangeWholeDocument(body)],
            )
        )
        took = await wait_for(client, uri, shows) - sent
        (new_line if k % 2 == 0 else in_line).append(took)
        await asyncio.sleep(0.2)  # an analyst types, pauses, looks
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()  # type: ignore[no-untyped-call]
    return first, in_line, new_line


def cli_check(rules: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "ringfence"), "check", str(rules), "--tenant", "gen"],
        check=False,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rules", type=int, default=2000)
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--broken", action="store_true", help="edit a file with a syntax error")
    args = ap.parse_args()
    text = generated_policy(args.rules)
    if args.broken:  # the first rule's condition ends in `&&`: a syntax error near the top
        cut = text.index("\n", text.index("    when ")) + 1
        text = text[: cut - 1] + " &&\n" + text[cut:]
    with rules_copy() as rules:
        tenant = rules / "gen"
        (tenant / "lists").mkdir(parents=True)
        (tenant / "lists" / "vip.csv").write_text("entry,tier\n+8613800138000,gold\n")
        path = tenant / "policy.rf"
        path.write_text(text)
        checks = [cli_check(rules) for _ in range(3)]
        in_process = []
        for _ in range(3):
            t = time.perf_counter()
            check_policy({"gen/policy.rf": text}, tenant="gen")
            in_process.append(time.perf_counter() - t)
        first, in_line, new_line = asyncio.run(measure(path, text, args.edits, args.broken))
    both = in_line + new_line
    order = [x for pair in zip(in_line, new_line, strict=False) for x in pair]
    med = statistics.median(both)
    cli = statistics.median(checks)
    alone = statistics.median(in_process)
    kind = ", a syntax error near the top" if args.broken else ""
    print(
        f"machine: {machine()}; {args.rules} rules, {len(text) / 1024:.0f} KiB{kind},"
        f" {len(both)} edits"
    )
    print(f"`ringfence check --tenant gen` (subprocess, median of 3): {cli * 1000:.0f} ms")
    print(f"check_policy in process (parse + check, median of 3): {alone * 1000:.0f} ms")
    print(f"lsp: open to first diagnostics: {first * 1000:.0f} ms (cold: parse everything)")
    for name, xs in (("edit in a line", in_line), ("edit + new line at top", new_line)):
        print(
            f"lsp: {name}: median {statistics.median(xs) * 1000:.0f} ms,"
            f" max {max(xs) * 1000:.0f} ms"
        )
    print("lsp: every edit, in order (ms):", " ".join(f"{x * 1000:.0f}" for x in order))
    print(
        f"lsp edit-to-diagnostics median {med * 1000:.0f} ms = {med / cli:.2f}x `ringfence check`,"
        f" {med / alone:.2f}x check_policy in process;"
        f" max {max(both) * 1000:.0f} ms; target < {TARGET_MS:.0f} ms:"
        f" {'met' if max(both) * 1000 < TARGET_MS else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
