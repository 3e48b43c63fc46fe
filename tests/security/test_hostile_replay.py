"""One hostile line never ends a replay.

An event file is untrusted input (an export, a log from another system). ``attributes`` as
a list, a ``phone`` of the wrong type, or an event dated 9999-12-31 under a ``today``
window each ended ``ringfence replay`` with a traceback. Now each is skipped and counted,
named by line in the text output, in ``--json`` and in the report, and ``--max-bad-lines``
stops a run whose input is mostly bad with a clear error. Both ways of parsing (in a worker
process and in the deciding one) are run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import RINGFENCE, RULES

from server.tools.replay_workers import WORKERS_ENV

GOOD = {
    "tenant": "demo",
    "phone_number": "+8617112340000",
    "event": {"scene": "sms_code", "app_id": "shop", "occurred_at": "2026-11-22T14:00:05+08:00"},
}


def good(n: int) -> dict[str, Any]:
    return {**GOOD, "phone_number": f"+861711234{n:04d}"}


HOSTILE = {
    "attributes-list": (
        {**GOOD, "event": {**GOOD["event"], "attributes": ["channel", "web"]}},
        "event.attributes must be an object",
    ),
    "phone-number-not-text": ({**GOOD, "phone_number": 8617112340000}, "phone_number must be"),
    "decision-log-phone-not-object": (
        {"v": 1, "tenant": "demo", "phone": "+8617112340000", "event": GOOD["event"]},
        "phone must be an object",
    ),
    "year-9999-today-window": (
        {**GOOD, "event": {**GOOD["event"], "occurred_at": "9999-12-30T20:00:00Z"}},
        "occurred_at out of range",
    ),
    "nested-100k-deep": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
}


@pytest.fixture
def events(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """Good events with every hostile line among them; returns the file and each hostile
    line's number."""
    lines: list[str] = []
    where: dict[str, int] = {}
    n = 0
    for name, (obj, _) in HOSTILE.items():
        for _ in range(3):
            lines.append(json.dumps(good(n)))
            n += 1
        lines.append(obj if isinstance(obj, str) else json.dumps(obj))
        where[name] = len(lines)
    lines.append(json.dumps(good(n)))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, where


def replay(*args: str, workers: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RINGFENCE), "replay", *args, "--rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, WORKERS_ENV: str(workers), "NO_COLOR": "1"},
    )


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
def test_bad_lines_are_skipped_counted_and_named(
    events: tuple[Path, dict[str, int]], tmp_path: Path, workers: int
) -> None:
    path, where = events
    report = tmp_path / "report.html"
    out = replay(str(path), "--report", str(report), workers=workers)
    assert "Traceback" not in out.stdout + out.stderr
    assert out.returncode == 0, out.stderr
    for name, (_, reason) in HOSTILE.items():
        assert f"{path}:{where[name]}: {reason}" in out.stderr
    assert f"{len(HOSTILE)} bad line(s) skipped" in out.stderr
    # The text output names them too, in a table of its own.
    assert f"{len(HOSTILE)} bad line(s) skipped" in out.stdout
    table = out.stdout.split(f"{len(HOSTILE)} bad line(s) skipped", 1)[1]
    for name, (_, reason) in HOSTILE.items():
        assert any(
            row.split()[:1] == [str(where[name])] and reason in row for row in table.splitlines()
        ), table
    # Every good line was decided.
    assert f"{3 * len(HOSTILE) + 1} events" in out.stdout
    page = report.read_text()
    assert 'id="bad-lines"' in page
    for name in HOSTILE:
        assert f'<td class="n">{where[name]}</td>' in page


def test_json_lists_the_bad_lines(events: tuple[Path, dict[str, int]]) -> None:
    path, where = events
    out = replay(str(path), "--json", workers=0)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["skipped_lines"] == len(HOSTILE)
    assert [b["line"] for b in summary["bad_lines"]] == sorted(where.values())
    for b, (_, reason) in zip(summary["bad_lines"], HOSTILE.values(), strict=True):
        assert b["reason"].startswith(reason)


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
def test_max_bad_lines_stops_the_run(events: tuple[Path, dict[str, int]], workers: int) -> None:
    path, where = events
    out = replay(str(path), "--max-bad-lines", "2", workers=workers)
    assert "Traceback" not in out.stdout + out.stderr
    assert out.returncode == 1
    third = sorted(where.values())[2]
    assert out.stderr.rstrip().endswith(
        f"ringfence replay: stopped at line {third}: more than 2 bad line(s) (--max-bad-lines 2)"
    )
    assert out.stdout == ""
    # Within the limit, the run completes.
    assert replay(str(path), "--max-bad-lines", str(len(HOSTILE)), workers=workers).returncode == 0
