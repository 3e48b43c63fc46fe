"""The HTML report as a file: one self-contained page, hostile values escaped, numbers
masked. (What the browser makes of it: test_report_browser.py.)"""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from backtest_support import HOSTILE_APP, HOSTILE_REASON, Backtest
from support import RINGFENCE, RULES


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(path: Path) -> _Tags:
    p = _Tags()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_the_page_loads_nothing_from_anywhere(backtest: Backtest) -> None:
    page = parse(backtest.report)
    for tag, attrs in page.tags:
        assert "src" not in attrs, (tag, attrs)  # every script is inline
        assert tag != "link", attrs  # no stylesheets, icons or preloads
        assert tag != "iframe"
    csp = next(a for t, a in page.tags if t == "meta" and a.get("http-equiv"))
    assert csp["http-equiv"] == "Content-Security-Policy"
    assert "default-src 'none'" in (csp["content"] or "")
    assert len(page.scripts) == 2  # plotly.js, then the figures
    assert "Plotly.newPlot" in page.scripts[1]


def test_hostile_values_stay_text(backtest: Backtest) -> None:
    html = backtest.report.read_text(encoding="utf-8")
    assert HOSTILE_APP in backtest.summary["diff"]["by_app"]
    assert any(r["reason"] == HOSTILE_REASON for r in backtest.summary["against"]["top_reasons"])
    page = parse(backtest.report)
    # Two script elements, as written: none was opened by a value in the data.
    assert [t for t, _ in page.tags].count("script") == 2
    assert [t for t, _ in page.tags].count("img") == 0
    assert "window.__pwned" not in page.scripts[0]
    figures = page.scripts[1]
    assert "</" not in figures
    # The values are there, escaped twice: as text for Plotly's markup (&lt;), then for
    # the script (\u0026).
    assert "\\u0026lt;/script\\u0026gt;" in figures
    assert "\\u0026lt;a href=" in figures
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned = 1" in html  # and in the tables


def test_numbers_appear_only_masked(backtest: Backtest) -> None:
    page = parse(backtest.report)
    text = backtest.report.read_text(encoding="utf-8").replace(page.scripts[0], "")
    for phone in backtest.phones:
        national = phone.removeprefix("+86")
        assert national not in text, phone
        assert national not in backtest.stdout, phone
    samples = backtest.summary["diff"]["samples"]
    assert samples
    for s in samples:
        assert re.fullmatch(r"\+86\d{2}\*{4}\d{2}", s["phone"]), s[
            "phone"
        ]  # 11 digits: 2 + 2 shown
        assert s["phone"] in text


def test_a_report_path_in_a_missing_folder_fails_before_replaying(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            str(RINGFENCE),
            "replay",
            str(tmp_path / "no-events.jsonl"),  # not read: the report path is checked first
            "--rules",
            str(RULES),
            "--report",
            str(tmp_path / "missing" / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"ringfence replay: --report: no such directory: {tmp_path / 'missing'}"
    )
