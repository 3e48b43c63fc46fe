"""The backtest report: one self-contained HTML page drawn from replay's summary.

Charts are Plotly figures; plotly.js is inlined once, the figures follow as JSON, so the
file opens with no network at all (its Content-Security-Policy forbids any fetch). Every
number comes from the summary dict that ``ringfence replay --json`` prints
(:func:`server.tools.summary.summarize`): nothing here counts anything.

The page shows data from event files and policies, both untrusted: text goes into the
HTML through Jinja2's autoescaping, and into the script only as JSON with ``<``, ``>``,
``&`` and the JavaScript line separators escaped, so no value can close the script.
Plotly draws chart text as a small HTML dialect (``<a href>``, ``<b>``, ``<span
style>``...), so every label that reaches a chart (trace names, categories, titles) is
HTML-escaped first: Plotly turns the entities back into the characters, as text.

Needs the ``report`` extra (plotly, jinja2): ``pip install 'ringfence[report]'``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder

from server.tools.outcomes import OUTCOME_COLUMNS, headline, outcome_rows, shown
from server.tools.summary import ACTION_ORDER, RULE_COLUMNS

ACTION_COLOURS = {
    "unspecified": "#7f7f7f",
    "allow": "#2ca02c",
    "review": "#ff7f0e",
    "block": "#d62728",
}
DIFF_COLOURS = {"before_only": "#1f77b4", "after_only": "#d62728", "action_changed": "#9467bd"}
# Plotly's Dark24: 24 colours that stay apart from one another on white.
DISTINCT_COLOURS = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86",
    "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE",
    "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
)  # fmt: skip
SIDE_NAMES = {"policy": "policy", "against": "against"}
DIFF_NAMES = {
    "before_only": "fired before only",
    "after_only": "fires after only",
    "action_changed": "action changed",
}
_JS_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


@dataclass(frozen=True, slots=True)
class Chart:
    id: str  # the element id; also how the browser test finds it
    title: str
    figure: go.Figure
    height: int = 380


@dataclass(frozen=True, slots=True)
class PolicySection:
    key: str  # "policy" or "against"
    heading: str
    data: Mapping[str, Any]
    charts: tuple[Chart, ...]


def _layout(title: str, x: str, y: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "template": "plotly_white",
        "xaxis": {"title": {"text": x}, "automargin": True},
        "yaxis": {"title": {"text": y}, "automargin": True},
        "legend": {"orientation": "h", "y": -0.25},
        "margin": {"t": 50, "r": 20},
        **extra,
    }


def actions_chart(key: str, p: Mapping[str, Any], timeline: Mapping[str, Any]) -> Chart:
    x = list(timeline["buckets"])
    fig = go.Figure(
        [
            go.Bar(x=x, y=series, name=action, marker_color=ACTION_COLOURS.get(action))
            for action, series in p["actions_over_time"].items()
        ],
        _layout(
            "Decisions per action over event time",
            f"event time ({timeline['timezone']}), {_width(timeline['bucket_seconds'])} buckets",
            "decisions",
            barmode="stack",
        ),
    )
    return Chart(f"{key}-actions", "Decisions per action", fig)


def colours(n: int) -> list[str]:
    """``n`` colours, all different: Plotly's 10-colour cycle repeats from the 11th rule, so
    rules get a 24-colour palette, then evenly spaced hues beyond it."""
    palette = list(DISTINCT_COLOURS)
    if n <= len(palette):
        return palette[:n]
    return palette + [
        f"hsl({round(360 * k / (n - len(palette)))}, 65%, {40 + 15 * (k % 2)}%)"
        for k in range(n - len(palette))
    ]


def rules_chart(key: str, p: Mapping[str, Any], timeline: Mapping[str, Any]) -> Chart:
    x = list(timeline["buckets"])
    names = sorted({rule for kind in ("live", "shadow") for rule in p["rules_over_time"][kind]})
    colour = dict(zip(names, colours(len(names)), strict=True))
    traces = [
        go.Scatter(
            x=x,
            y=series,
            name=rule if kind == "live" else f"{rule} (shadow)",
            mode="lines",
            legendgroup=kind,
            line={
                "dash": "solid" if kind == "live" else "dot",
                "shape": "hv",
                "color": colour[rule],
            },
        )
        for kind in ("live", "shadow")
        for rule, series in p["rules_over_time"][kind].items()
    ]
    fig = go.Figure(
        traces,
        _layout(
            "Rule fires over event time (dotted: shadow)",
            f"event time ({timeline['timezone']})",
            "fires",
        ),
    )
    return Chart(f"{key}-rules", "Rule fires, live and shadow", fig, height=440)


def reasons_chart(key: str, p: Mapping[str, Any]) -> Chart:
    top = list(reversed(p["top_reasons"]))  # largest at the top of a horizontal bar chart
    fig = go.Figure(
        [
            go.Bar(
                x=[r["count"] for r in top],
                y=[f"{r['rule']}: {r['reason']}" for r in top],
                orientation="h",
                name="reasons",
                marker_color="#1f77b4",
            )
        ],
        _layout("Top reasons", "matches", "", showlegend=False),
    )
    return Chart(f"{key}-reasons", "Top reasons", fig, height=max(260, 40 + 28 * len(top)))


def _bar(chart_id: str, title: str, counts: Mapping[str, int], x: str) -> Chart:
    fig = go.Figure(
        [go.Bar(x=list(counts), y=list(counts.values()), name="decisions")],
        _layout(title, x, "decisions", showlegend=False),
    )
    return Chart(chart_id, title, fig, height=320)


def diff_charts(diff: Mapping[str, Any], timeline: Mapping[str, Any]) -> tuple[Chart, ...]:
    by_rule = diff["by_rule"]
    rules_fig = go.Figure(
        [
            go.Bar(
                x=list(by_rule),
                y=[c[kind] for c in by_rule.values()],
                name=DIFF_NAMES[kind],
                marker_color=DIFF_COLOURS[kind],
            )
            for kind in ("before_only", "after_only", "action_changed")
        ],
        _layout("Changed decisions by rule", "rule", "decisions", barmode="group"),
    )
    time_fig = go.Figure(
        [go.Bar(x=list(timeline["buckets"]), y=diff["over_time"], name="changed")],
        _layout(
            "Changed decisions over event time",
            f"event time ({timeline['timezone']})",
            "decisions",
            showlegend=False,
        ),
    )
    return (
        _bar("diff-transitions", "Changed decisions by transition", diff["transitions"], "change"),
        Chart("diff-over-time", "Changed decisions over time", time_fig, height=320),
        Chart("diff-rules", "Changed decisions by rule", rules_fig),
        _bar(
            "diff-segments",
            "Changed decisions by segment kind",
            diff["by_segment_kind"],
            "segment kind",
        ),
        _bar("diff-apps", "Changed decisions by app", diff["by_app"], "app"),
    )


def outcome_charts(summary: Mapping[str, Any]) -> tuple[Chart, ...]:
    """Precision against recall per rule (and for the policy), one trace per policy, and
    what each rule caught and falsely flagged; () when no event was labelled."""
    sides = [
        (key, summary[key]["outcomes"])
        for key in ("policy", "against")
        if key in summary and summary[key].get("outcomes")
    ]
    if not sides:
        return ()
    pr = []
    bars = []
    for key, o in sides:
        rows = [(name, r) for name, r in outcome_rows(o) if r["precision"] is not None]
        pr.append(
            go.Scatter(
                x=[r["recall"] for _, r in rows],
                y=[r["precision"] for _, r in rows],
                text=[name for name, _ in rows],
                name=SIDE_NAMES[key],
                mode="markers+text",
                textposition="top center",
                marker={"size": 10, "symbol": "circle" if key == "policy" else "diamond"},
            )
        )
        rules = o["rules"]
        for what, colour in (("caught", "#2ca02c"), ("false_alarms", "#d62728")):
            bars.append(
                go.Bar(
                    x=list(rules),
                    y=[r[what] for r in rules.values()],
                    name=f"{what.replace('_', ' ')} ({SIDE_NAMES[key]})",
                    marker_color=colour,
                    marker_pattern_shape="" if key == "policy" else "/",
                )
            )
    pr_fig = go.Figure(
        pr,
        _layout(
            "Precision and recall per rule (and of the policy)",
            "recall (share of fraud caught)",
            "precision (share of fires that were fraud)",
            xaxis={"range": [-0.05, 1.05], "title": {"text": "recall"}},
            yaxis={"range": [-0.05, 1.1], "title": {"text": "precision"}},
        ),
    )
    bar_fig = go.Figure(
        bars, _layout("Fraud caught and good events flagged, per rule", "rule", "events")
    )
    bar_fig.update_layout(barmode="group")
    return (
        Chart("outcomes-pr", "Precision and recall per rule", pr_fig, height=520),
        Chart("outcomes-caught", "Caught and false alarms per rule", bar_fig, height=420),
    )


def _width(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


def _section(key: str, p: Mapping[str, Any], timeline: Mapping[str, Any]) -> PolicySection:
    label = "policy" if key == "policy" else "against"
    return PolicySection(
        key,
        f"{label}: {p['rules_dir']} (version {p['version']})",
        p,
        (
            actions_chart(key, p, timeline),
            rules_chart(key, p, timeline),
            reasons_chart(key, p),
        ),
    )


# Trace fields that Plotly draws as text: categories, names, labels.
_TEXT_FIELDS = ("name", "x", "y", "text", "hovertext", "labels", "legendgrouptitle")
_MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _plain(value: Any) -> Any:
    """``value`` with every string in it escaped for Plotly's HTML dialect."""
    if isinstance(value, str):
        return value.translate(_MARKUP)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _plain_figure(fig: Mapping[str, Any], height: int) -> dict[str, Any]:
    """A figure's JSON with its text escaped: the traces' text fields and every title."""
    data = [
        {k: _plain(v) if k in _TEXT_FIELDS else v for k, v in trace.items()}
        for trace in fig["data"]
    ]
    layout = dict(fig["layout"])
    for key, part in layout.items():
        if key == "title" or (key.endswith("axis") and isinstance(part, dict)):
            layout[key] = _plain_titles(part)
    return {"data": data, "layout": {**layout, "height": height}}


def _plain_titles(part: Any) -> Any:
    if not isinstance(part, dict):
        return part
    return {k: _plain(v) if k in ("title", "text") else v for k, v in part.items()}


def _script_json(value: Any) -> str:
    return json.dumps(value, cls=PlotlyJSONEncoder, separators=(",", ":")).translate(_JS_ESCAPES)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("server.tools", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(summary: Mapping[str, Any]) -> str:
    """The report page for one summary (the dict ``ringfence replay --json`` prints)."""
    timeline = summary["timeline"]
    sections = [_section("policy", summary["policy"], timeline)]
    if "against" in summary:
        sections.append(_section("against", summary["against"], timeline))
    diff = summary.get("diff")
    changes: Sequence[Chart] = diff_charts(diff, timeline) if diff is not None else ()
    outcomes = outcome_charts(summary)
    charts = [c for s in sections for c in s.charts] + list(changes) + list(outcomes)
    figures: dict[str, dict[str, Any]] = {}
    for c in charts:
        figures[c.id] = _plain_figure(c.figure.to_plotly_json(), c.height)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            summary=summary,
            timeline=timeline,
            width=_width(timeline["bucket_seconds"]),
            sections=sections,
            diff=diff,
            changes=changes,
            rule_columns=RULE_COLUMNS,
            action_order=ACTION_ORDER,
            outcome_charts=outcomes,
            outcome_columns=OUTCOME_COLUMNS,
            outcome_rows=outcome_rows,
            outcome_headline=headline,
            shown=shown,
            plotly_js=get_plotlyjs(),
            figures_json=_script_json(figures),
        )
    )
