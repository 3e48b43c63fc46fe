"""Replay parses in worker processes while it decides: the result is always the sorted,
single-process replay's, whatever the order of the file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bench.traffic import generate
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.tools.replay import read_events, replay_file, run_replay_sync, stream_events

RULES = Path(__file__).resolve().parents[3] / "rules"


@pytest.fixture(scope="module")
def day() -> list[dict[str, object]]:
    return generate(seed=5, users=1_000)


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    reg = TenantRegistry(RULES, PhoneParser())
    assert reg.load_sync(["demo"])[0].ok
    return reg


def write(path: Path, events: list[dict[str, object]], extra: list[str] = ()) -> Path:  # type: ignore[assignment]
    lines = [json.dumps(e) for e in events]
    for i, line in enumerate(extra):
        lines.insert(3 + 7 * i, line)
    path.write_text("\n".join(lines) + "\n")
    return path


def reference(path: Path, registry: TenantRegistry) -> dict[str, object]:
    """The plain way: parse here, sort, decide."""
    errors: list[str] = []
    events = read_events(path, registry.parser, "demo", errors, workers=0)
    events = [e for e in events if e.tenant == "demo"]
    bundle = registry.get("demo")
    assert bundle is not None
    summary, _, _ = run_replay_sync(events, bundle, None, progress=False)
    out = summary.to_json()
    out.pop("seconds")
    out.pop("events_per_second")
    return out


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
    noise = [
        "{broken",
        json.dumps({**events[0], "tenant": "other"}),  # another tenant's event
        json.dumps({**events[1], "replayed": True}),  # a retry in a decision log
    ]
    path = write(tmp_path / "events.jsonl", events, noise)
    bundle = registry.get("demo")
    assert bundle is not None
    errors: list[str] = []
    summary, _, _ = replay_file(path, registry.parser, bundle, errors=errors, workers=workers)
    got = summary.to_json()
    got.pop("seconds")
    got.pop("events_per_second")
    assert got == reference(path, registry)
    assert got["events"] == len(events)
    assert len(errors) == 1
    assert ":4:" in errors[0]  # the broken line, by its line number


def test_stream_keeps_file_order_and_reports_bad_lines(tmp_path: Path) -> None:
    events = generate(seed=9, users=3_000)  # several chunks of 2,000 lines
    path = write(tmp_path / "e.jsonl", events, ["[1, 2]", "not json"])
    errors: list[str] = []
    lines = [e.line for e in stream_events(path, PhoneParser(), "demo", errors, workers=2)]
    assert lines == sorted(lines)
    assert len(lines) == len(events)
    assert [e.split(":")[1] for e in errors] == ["4", "11"]
