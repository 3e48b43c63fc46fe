"""Replay parses in worker processes while it decides: the result is always the sorted,
single-process replay's, whatever the order of the file.

Worker processes are forked, and a process running other threads never forks (a test
session has gRPC's), so the parallel cases run in a fresh interpreter, as the CLI does.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench.traffic import generate
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.tools.replay import read_events, replay_file, run_replay_sync
from server.tools.replay_workers import WORKERS_ENV, usable_workers

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "rules"

# Run in a fresh interpreter: replay FILE with N workers, print the summary and errors.
CHILD = """
import json, sys
from pathlib import Path
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.tools.replay import replay_file, stream_events
path, workers, rules = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
reg = TenantRegistry(rules, PhoneParser())
assert reg.load_sync(["demo"])[0].ok
errors = []
summary, _, _ = replay_file(path, reg.parser, reg.get("demo"), errors=errors, workers=workers)
lines = [e.line for e in stream_events(path, reg.parser, "demo", [], workers=workers)]
print(json.dumps({"summary": summary.to_json(), "errors": errors, "lines": lines}))
"""


@pytest.fixture(scope="module")
def day() -> list[dict[str, object]]:
    return generate(seed=5, users=1_000)


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    reg = TenantRegistry(RULES, PhoneParser())
    assert reg.load_sync(["demo"])[0].ok
    return reg


def write(path: Path, events: list[dict[str, object]], extra: tuple[str, ...] = ()) -> Path:
    lines = [json.dumps(e) for e in events]
    for i, line in enumerate(extra):
        lines.insert(3 + 7 * i, line)
    path.write_text("\n".join(lines) + "\n")
    return path


def without_timing(summary: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in summary.items() if k not in ("seconds", "events_per_second")}


def reference(path: Path, registry: TenantRegistry) -> dict[str, object]:
    """The plain way: parse here, sort, decide."""
    events = read_events(path, registry.parser, "demo", [], workers=0)
    events = [e for e in events if e.tenant == "demo"]
    bundle = registry.get("demo")
    assert bundle is not None
    summary, _, _ = run_replay_sync(events, bundle, None)
    return without_timing(summary.to_json())


def in_a_fresh_process(path: Path, workers: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(workers), str(RULES)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("order", ["sorted", "shuffled", "one_late"])
@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_replay_equals_the_sorted_one(
    tmp_path: Path,
    day: list[dict[str, object]],
    registry: TenantRegistry,
    order: str,
    workers: int,
) -> None:
    events = list(day)
    if order == "shuffled":
        random.Random(3).shuffle(events)
    elif order == "one_late":
        events.append(events.pop(len(events) // 2))  # one event far out of order
    noise = (
        "{broken",
        json.dumps({**events[0], "tenant": "other"}),  # another tenant's event
        json.dumps({**events[1], "replayed": True}),  # a retry in a decision log
    )
    path = write(tmp_path / "events.jsonl", events, noise)
    if workers:
        got = in_a_fresh_process(path, workers)
        summary, errors = got["summary"], got["errors"]
        assert isinstance(summary, dict)
        assert isinstance(errors, list)
    else:
        bundle = registry.get("demo")
        assert bundle is not None
        errors = []
        result, _, _ = replay_file(path, registry.parser, bundle, errors=errors, workers=0)
        summary = result.to_json()
    assert without_timing(summary) == reference(path, registry)
    assert summary["events"] == len(events)
    assert len(errors) == 1
    assert ":4:" in errors[0]  # the broken line, by its line number


def test_workers_keep_file_order_and_report_bad_lines(tmp_path: Path) -> None:
    events = generate(seed=9, users=1_500)  # several chunks of 1,000 lines
    path = write(tmp_path / "e.jsonl", events, ("[1, 2]", "not json"))
    got = in_a_fresh_process(path, 2)
    lines = got["lines"]
    assert isinstance(lines, list)
    assert lines == sorted(lines)
    assert len(lines) == len(events)
    assert [e.split(":")[1] for e in got["errors"]] == ["4", "11"]  # type: ignore[union-attr]


def test_a_process_with_other_threads_never_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert usable_workers(2) == 0
    finally:
        stop.set()
        other.join()
    monkeypatch.setenv(WORKERS_ENV, "3")
    # 3 as told, unless this test process already runs gRPC's threads.
    assert usable_workers(None) == (3 if threading.active_count() == 1 else 0)
