"""The HTML report in a real browser: Debian's headless Chromium, driven by selenium through
the system chromedriver (``make test`` installs both when missing).

The page must load with no console error and no network, and every chart's data, read
back from the page, must be the numbers ``ringfence replay --json`` printed."""

from __future__ import annotations

import html
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backtest_support import HOSTILE_APP, HOSTILE_REASON, Backtest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

from server.tools.outcomes import OUTCOME_COLUMNS, outcome_rows, shown
from server.tools.summary import ACTION_ORDER, RULE_COLUMNS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,2000",
)
# Each chart as the page holds it: id -> traces of {name, x, y}.
READ_CHARTS = """
const out = {};
for (const el of document.querySelectorAll('.chart')) {
  out[el.id] = el.data.map(t => ({
    name: t.name, x: Array.from(t.x), y: Array.from(t.y),
    text: t.text === undefined ? null : Array.from(t.text),
    colour: t.line && t.line.color ? t.line.color : null,
  }));
}
return out;
"""
# Each section's tables as text: {"policy": {"actions": [[cell, ...], ...], "rules": ...}}.
TABLES = """
const out = {};
for (const section of document.querySelectorAll('section')) {
  out[section.id] = {};
  for (const table of section.querySelectorAll('table')) {
    out[section.id][table.className] = Array.from(table.rows).slice(1).map(
      tr => Array.from(tr.cells).map(td => td.textContent.trim()));
  }
}
return out;
"""
# What each chart draws as text (tick labels, legend, titles), and its links.
CHART_TEXT = """
const out = {};
for (const el of document.querySelectorAll('.chart')) {
  out[el.id] = {
    texts: Array.from(el.querySelectorAll('svg text')).map(t => t.textContent),
    links: el.querySelectorAll('a').length,
    styled: Array.from(el.querySelectorAll('svg text tspan[style]')).map(t => t.textContent),
  };
}
return out;
"""
PLOTTED = """
const charts = Array.from(document.querySelectorAll('.chart'));
return charts.length > 0 && charts.every(el => el._fullLayout && el.querySelector('svg'));
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            pytest.fail(f"{binary} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser: webdriver.Chrome, backtest: Backtest) -> dict[str, Any]:
    browser.get(backtest.report.as_uri())
    try:
        WebDriverWait(browser, 15).until(lambda d: d.execute_script(PLOTTED))
    except TimeoutException:
        pytest.fail(f"the charts were never drawn; browser log: {browser.get_log('browser')}")
    charts: dict[str, Any] = browser.execute_script(READ_CHARTS)
    return {
        # Chart text is HTML-escaped for Plotly's markup; the data means the unescaped text.
        "charts": unescaped(charts),
        "chart_text": browser.execute_script(CHART_TEXT),
        "log": browser.get_log("browser"),
        "resources": browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        ),
        "pwned": browser.execute_script("return window.__pwned === undefined ? null : 1"),
        "tables": browser.execute_script(TABLES),
        "samples": browser.execute_script(
            "return Array.from(document.querySelectorAll('table.samples tr'))"
            ".slice(1).map(tr => Array.from(tr.cells).map(td => td.textContent))"
        ),
    }


def unescaped(value: Any) -> Any:
    if isinstance(value, str):
        return html.unescape(value)
    if isinstance(value, list):
        return [unescaped(v) for v in value]
    if isinstance(value, dict):
        return {k: unescaped(v) for k, v in value.items()}
    return value


def test_chart_text_is_text_not_markup(page: dict[str, Any]) -> None:
    """App ids and reasons are drawn verbatim: no link, no styled text comes of them."""
    text = page["chart_text"]
    assert {chart: t["links"] for chart, t in text.items()} == dict.fromkeys(text, 0)
    assert HOSTILE_APP in text["diff-apps"]["texts"]
    assert f"hostile_reason: {HOSTILE_REASON}" in text["against-reasons"]["texts"]
    styled = [s for t in text.values() for s in t["styled"]]
    assert not any(s in ("B", "it", "app", "verify") for s in styled), styled


def test_no_console_errors(page: dict[str, Any]) -> None:
    errors = [e for e in page["log"] if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def test_nothing_is_fetched_and_nothing_injected(page: dict[str, Any]) -> None:
    assert page["resources"] == []
    assert page["pwned"] is None


def test_every_chart_is_there(page: dict[str, Any]) -> None:
    expected = {
        f"{side}-{chart}"
        for side in ("policy", "against")
        for chart in ("actions", "rules", "reasons")
    } | {"diff-transitions", "diff-over-time", "diff-rules", "diff-segments", "diff-apps"}
    expected |= {"outcomes-pr", "outcomes-caught"}
    assert set(page["charts"]) == expected


def by_name(traces: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = [t["name"] for t in traces]
    assert len(names) == len(set(names)), names
    return {t["name"]: t for t in traces}


@pytest.mark.parametrize("side", ["policy", "against"])
def test_decisions_per_action_over_time(
    page: dict[str, Any], backtest: Backtest, side: str
) -> None:
    data = backtest.summary[side]
    traces = by_name(page["charts"][f"{side}-actions"])
    assert set(traces) == set(data["actions_over_time"]) == set(data["actions"])
    for action, trace in traces.items():
        assert trace["x"] == backtest.summary["timeline"]["buckets"]
        assert trace["y"] == data["actions_over_time"][action]
        assert sum(trace["y"]) == data["actions"][action]


@pytest.mark.parametrize("side", ["policy", "against"])
def test_fires_per_rule_live_and_shadow(
    page: dict[str, Any], backtest: Backtest, side: str
) -> None:
    data = backtest.summary[side]
    traces = by_name(page["charts"][f"{side}-rules"])
    expected = {
        (rule if kind == "live" else f"{rule} (shadow)"): (kind, rule, series)
        for kind in ("live", "shadow")
        for rule, series in data["rules_over_time"][kind].items()
    }
    assert set(traces) == set(expected)
    assert any(kind == "shadow" for kind, _, _ in expected.values())
    for name, (kind, rule, series) in expected.items():
        assert traces[name]["x"] == backtest.summary["timeline"]["buckets"]
        assert traces[name]["y"] == series
        assert sum(series) == data["rules"][rule][kind]


@pytest.mark.parametrize("side", ["policy", "against"])
def test_every_rule_has_a_colour_of_its_own(page: dict[str, Any], side: str) -> None:
    """Plotly's default cycle has 10 colours: the 11th rule would share the first's."""
    traces = page["charts"][f"{side}-rules"]
    colour = {t["name"].removesuffix(" (shadow)"): t["colour"] for t in traces}
    assert len(colour) > 10
    assert None not in colour.values()
    assert len(set(colour.values())) == len(colour)
    for t in traces:  # a shadow rule's dotted line has its rule's colour
        assert t["colour"] == colour[t["name"].removesuffix(" (shadow)")]


def test_precision_and_recall_per_rule(page: dict[str, Any], backtest: Backtest) -> None:
    traces = by_name(page["charts"]["outcomes-pr"])
    assert set(traces) == {"policy", "against"}
    for side, trace in traces.items():
        o = backtest.summary[side]["outcomes"]
        expected = {
            name: (r["recall"], r["precision"])
            for name, r in outcome_rows(o)
            if r["precision"] is not None
        }
        assert dict(zip(trace["text"], zip(trace["x"], trace["y"], strict=True), strict=True)) == {
            k: tuple(v) for k, v in expected.items()
        }
    # The lower run threshold catches more of the consecutive batch, at no cost.
    before = backtest.summary["policy"]["outcomes"]["rules"]["consecutive_numbers_block"]
    after = backtest.summary["against"]["outcomes"]["rules"]["consecutive_numbers_block"]
    assert after["recall"] > before["recall"]
    assert after["false_alarms"] == before["false_alarms"] == 0


def test_caught_and_false_alarms_per_rule(page: dict[str, Any], backtest: Backtest) -> None:
    traces = by_name(page["charts"]["outcomes-caught"])
    for side in ("policy", "against"):
        rules = backtest.summary[side]["outcomes"]["rules"]
        for key, what in (("caught", "caught"), ("false_alarms", "false alarms")):
            trace = traces[f"{what} ({side})"]
            assert dict(zip(trace["x"], trace["y"], strict=True)) == {
                name: r[key] for name, r in rules.items()
            }


@pytest.mark.parametrize("side", ["policy", "against"])
def test_outcome_tables(page: dict[str, Any], backtest: Backtest, side: str) -> None:
    o = backtest.summary[side]["outcomes"]
    assert o["fraud"] > 0
    assert o["good"] > 0
    table = page["tables"][side]["outcomes"]
    assert table == [
        [name, *(shown(row.get(key)) for key, _ in OUTCOME_COLUMNS)]
        for name, row in outcome_rows(o)
    ]


@pytest.mark.parametrize("side", ["policy", "against"])
def test_top_reasons(page: dict[str, Any], backtest: Backtest, side: str) -> None:
    (trace,) = page["charts"][f"{side}-reasons"]
    shown = dict(zip(trace["y"], trace["x"], strict=True))
    expected = {
        f"{r['rule']}: {r['reason']}": r["count"] for r in backtest.summary[side]["top_reasons"]
    }
    assert shown == expected


@pytest.mark.parametrize(
    ("chart", "key"),
    [
        ("diff-transitions", "transitions"),
        ("diff-segments", "by_segment_kind"),
        ("diff-apps", "by_app"),
    ],
)
def test_changes_by_group(page: dict[str, Any], backtest: Backtest, chart: str, key: str) -> None:
    (trace,) = page["charts"][chart]
    assert dict(zip(trace["x"], trace["y"], strict=True)) == backtest.summary["diff"][key]


def test_changes_over_time(page: dict[str, Any], backtest: Backtest) -> None:
    (trace,) = page["charts"]["diff-over-time"]
    assert trace["x"] == backtest.summary["timeline"]["buckets"]
    assert trace["y"] == backtest.summary["diff"]["over_time"]
    assert sum(trace["y"]) == backtest.summary["diff"]["changed"] > 0


def test_changes_by_rule(page: dict[str, Any], backtest: Backtest) -> None:
    by_rule = backtest.summary["diff"]["by_rule"]
    traces = by_name(page["charts"]["diff-rules"])
    names = {
        "fired before only": "before_only",
        "fires after only": "after_only",
        "action changed": "action_changed",
    }
    assert set(traces) == set(names)
    for name, key in names.items():
        shown = dict(zip(traces[name]["x"], traces[name]["y"], strict=True))
        assert shown == {rule: counts[key] for rule, counts in by_rule.items()}
    assert by_rule["consecutive_numbers_block"]["after_only"] > 0
    assert by_rule["hostile_reason"]["after_only"] > 0


def test_masked_samples(page: dict[str, Any], backtest: Backtest) -> None:
    samples = backtest.summary["diff"]["samples"]
    assert [row[5] for row in page["samples"]] == [s["phone"] for s in samples]
    assert [row[3] for row in page["samples"]] == [s["app"] for s in samples]
    assert HOSTILE_APP in [row[3] for row in page["samples"]]  # shown as text, verbatim


@pytest.mark.parametrize("side", ["policy", "against"])
def test_tables_show_the_json_numbers(page: dict[str, Any], backtest: Backtest, side: str) -> None:
    data = backtest.summary[side]
    tables = page["tables"][side]
    assert {row[0]: int(row[1]) for row in tables["actions"]} == data["actions"]
    rules = {row[0]: row[1:] for row in tables["rules"]}
    assert set(rules) == set(data["rules"])
    for name, r in data["rules"].items():
        shown = rules[name]
        # The page's columns are summary.RULE_COLUMNS, in order, as --json has them.
        assert shown[: len(RULE_COLUMNS)] == [str(r[key]) for key, _ in RULE_COLUMNS]
        fired_as, decided = shown[len(RULE_COLUMNS) :]
        assert fired_as == ", ".join(f"{a} {n}" for a, n in r["actions"].items())
        in_order = [a for a in ACTION_ORDER if a in r["decided"]]  # --json sorts keys
        assert decided == ", ".join(f"{a} {r['decided'][a]}" for a in in_order)
        assert sum(r["decided"].values()) == r["live"] + r["shadow"]
    if side == "against":
        # A rule that only adds a score: no action of its own, its decisions still shown.
        scored = rules["scored_mvno"]
        assert scored[len(RULE_COLUMNS)] == f"score {data['rules']['scored_mvno']['live']}"
        assert "review " in scored[len(RULE_COLUMNS) + 1]
    before, after = backtest.summary["policy"]["actions"], backtest.summary["against"]["actions"]
    compare = {row[0]: (int(row[1]), int(row[2])) for row in page["tables"]["diff"]["compare"]}
    assert compare == {a: (before.get(a, 0), after.get(a, 0)) for a in before.keys() | after}
