"""The backtest report draws event text as text.

Plotly renders chart text as a small HTML dialect, so an ``app_id`` or a reason holding
``<a href=...>`` became a live link inside the charts, and ``<b style=...>`` styled text
(the page's own HTML escaping held). Every label that reaches a chart is now escaped for
Plotly; ``tests/server/tools/test_report_browser.py`` checks in headless Chromium that no
link or styled text comes of them. This test checks the page itself: no string a chart
draws holds markup.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from support import RINGFENCE, RULES

LINK = '<a href="https://evil.example/x">click</a><b style="color:red">loud</b>'
REASON_RULE = """
rule linked_reason {
    when event.scene == "register"
    then review
    reason "<a href='https://evil.example/phish'>verify</a> {event.app_id}"
}
"""


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    return []


def test_no_chart_text_holds_markup(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "tenant": "demo",
                    "phone_number": f"+8617155550{k:03d}",
                    "event": {
                        "scene": "register",
                        "app_id": LINK,
                        "occurred_at": f"2026-03-01T10:{k:02d}:00+08:00",
                    },
                }
            )
            + "\n"
            for k in range(30)
        )
    )
    candidate = tmp_path / "candidate"
    shutil.copytree(RULES, candidate)
    policy = candidate / "demo" / "policy.rf"
    policy.write_text(policy.read_text() + REASON_RULE)
    report = tmp_path / "report.html"
    args = ["replay", str(events), "--rules", str(RULES), "--against", str(candidate)]
    out = subprocess.run(
        [str(RINGFENCE), *args, "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    page = report.read_text(encoding="utf-8")
    found = re.search(r"const FIGURES = (\{.*?\});\n", page)
    assert found is not None
    figures = json.loads(found.group(1))
    drawn = [
        text
        for fig in figures.values()
        for trace in fig["data"]
        for key in ("name", "x", "y", "text")
        for text in strings(trace.get(key))
    ]
    drawn += [t for fig in figures.values() for t in strings(fig["layout"].get("title"))]
    assert any("evil.example" in t for t in drawn)  # the hostile text is on the charts...
    assert [t for t in drawn if "<" in t or ">" in t] == []  # ...as text, never markup
