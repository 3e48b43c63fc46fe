"""A backtest through the real command: the traffic generator's day, plus hostile events,
replayed against the shipped rules and a stricter candidate, with ``--report`` and
``--json``. The report tests share one run (the ``backtest`` fixture in conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from support import RINGFENCE, RULES

from bench.traffic import TZ, generate

DAY = datetime(2026, 3, 1, tzinfo=TZ)
# Values an attacker controls in an event file or a policy, meant to break out of the page
# (a script), into the terminal's markup (rich's [red]), or into Plotly's text markup (a
# live link, styled text).
HOSTILE_APP = (
    "</script><script>window.__pwned = 1</script>[red]x[/red]"
    '<a href="https://evil.example/app">app</a><b style="color:red">B</b>'
)
HOSTILE_REASON = (
    "</script><img src=x onerror=window.__pwned=2>"
    "<a href='https://evil.example/phish'>verify</a><i>it</i>"
)
FRAUD_SCENARIOS = "privacy_platform,consecutive_batch,code_farm"
CANDIDATE_RULE = f"""
rule hostile_reason {{
    when event.scene == REGISTRATION and phone.segment_kind == "mvno"
    then review
    reason "{HOSTILE_REASON}"
}}

# Adds a score and decides nothing itself: its fires show by the decisions they were in.
rule scored_mvno {{
    when phone.segment_kind == "mvno"
    score 5
}}
"""


@dataclass(frozen=True)
class Backtest:
    events: Path
    phones: frozenset[str]  # every number in the events, as written
    report: Path
    summary: dict[str, Any]  # what --json printed
    stdout: str


def hostile_batch() -> list[dict[str, Any]]:
    """A run of consecutive MVNO numbers signing up to an app with a hostile id: the
    candidate blocks the 10th to 19th, so the app shows in the changes and samples."""
    at = DAY + timedelta(minutes=20)  # first of the changes: among the samples
    return [
        {
            "tenant": "demo",
            "phone_number": f"+86171555500{k:02d}",
            "event": {
                "scene": "register",
                "app_id": HOSTILE_APP,
                "occurred_at": (at + timedelta(minutes=k)).isoformat(),
            },
        }
        for k in range(25)
    ]


def run_backtest(tmp: Path) -> Backtest:
    events = [*generate(DAY, seed=7, users=300), *hostile_batch()]
    path = tmp / "day.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    candidate = tmp / "candidate"
    shutil.copytree(RULES, candidate)
    policy = candidate / "demo" / "policy.rf"
    text = policy.read_text().replace("const RUN_BLOCK = 20", "const RUN_BLOCK = 10")
    policy.write_text(text + CANDIDATE_RULE)
    report = tmp / "report.html"
    out = subprocess.run(
        [
            str(RINGFENCE),
            "replay",
            str(path),
            "--rules",
            str(RULES),
            "--against",
            str(candidate),
            "--report",
            str(report),
            "--json",
            # The generator's scenarios: these are abuse, normal and trickle are people.
            "--fraud-label",
            FRAUD_SCENARIOS,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return Backtest(
        path,
        frozenset(e["phone_number"] for e in events),
        report,
        json.loads(out.stdout),
        out.stdout,
    )
