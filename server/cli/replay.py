"""``ringfence replay``: replay recorded events through a policy (backtest).

One summary (:func:`server.tools.summary.summarize`) feeds every output: the tables here,
``--json`` and the HTML ``--report``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.cli.common import open_ip_databases, registry

if TYPE_CHECKING:
    from rich.console import Console

    from server.bundle.load import TenantBundle

TOP_REASONS_SHOWN = 10
GROUPS_SHOWN = 10
BAD_LINES_SHOWN = 20  # on stderr, as they are found
BAD_LINES_KEPT = 100  # in the summary (--json, the tables, the report)


def run_replay(ns: argparse.Namespace) -> int:
    import json
    from collections import Counter

    from server.cli import output
    from server.tools.decisions import DecisionSink, open_sink, parquet_problem
    from server.tools.outcomes import Labelling, LabelReader, LabelsFileError, read_labels
    from server.tools.replay import first_tenant, replay_file
    from server.tools.replay_input import BadLines, TooManyBadLines
    from server.tools.summary import PolicyRun, summarize

    if ns.max_bad_lines is not None and ns.max_bad_lines < 0:
        print("ringfence replay: --max-bad-lines must be 0 or more", file=sys.stderr)
        return 2

    # Everything that can be found wrong before a long replay is found now.
    report_path = Path(ns.report) if ns.report else None
    if report_path is not None:
        problem = _report_problem(report_path)
        if problem:
            print(f"ringfence replay: --report: {problem}", file=sys.stderr)
            return 2
    decisions_path = Path(ns.decisions) if ns.decisions else None
    if decisions_path is not None:
        problem = _decisions_problem(decisions_path, parquet_problem)
        if problem:
            print(f"ringfence replay: --decisions: {problem}", file=sys.stderr)
            return 2
    by_request: dict[str, str] = {}
    if ns.labels:
        try:
            by_request = read_labels(Path(ns.labels))
        except LabelsFileError as exc:
            print(f"ringfence replay: --labels: {exc}", file=sys.stderr)
            return 2
    fraud_labels = [v for arg in ns.fraud_label for v in arg.split(",")]
    labelling = Labelling(LabelReader(fraud_labels), by_request)
    reg = registry(Path(ns.rules))
    events_path = Path(ns.events)
    tenant = first_tenant(events_path, ns.tenant or "")
    if not tenant:
        print(
            f"ringfence replay: no event in {events_path} names a tenant; use --tenant",
            file=sys.stderr,
        )
        return 1

    def load(rules: Path) -> TenantBundle:
        r = registry(rules)
        if tenant not in r.discover():
            have = ", ".join(r.discover()) or "none"
            print(
                f"ringfence replay: no tenant folder {tenant!r} in {rules} (tenants there: {have})",
                file=sys.stderr,
            )
            raise SystemExit(1)
        outcome = r.load_sync([tenant])[0]
        if not outcome.ok:
            print(outcome.error, file=sys.stderr)
            raise SystemExit(1)
        bundle = r.get(tenant)
        assert bundle is not None
        return bundle

    base = load(Path(ns.rules))
    other = load(Path(ns.against)) if ns.against else None
    locator = open_ip_databases(ns.ip_db, "replay")
    if locator is None:
        return 2
    # Parsing (in a worker process when a core is free) and deciding overlap; the bar
    # counts lines of the file, bad lines are reported after.
    errors = BadLines(events_path, ns.max_bad_lines)
    seen: Counter[str] = Counter()
    sink: DecisionSink | None = None
    if decisions_path is not None:
        sink = open_sink(decisions_path, with_against=other is not None)
    try:
        with output.progress(_count_lines(events_path), "replay") as step:
            summary, other_summary, diff = replay_file(
                events_path,
                reg.parser,
                base,
                other,
                errors=errors,
                progress=step,
                locate=locator.facts,
                labels=labelling,
                decisions=sink,
                tenants=seen,
            )
    except TooManyBadLines as exc:
        for e in errors[: min(BAD_LINES_SHOWN, exc.limit + 1)]:
            print(e, file=sys.stderr)
        print(
            f"ringfence replay: stopped at line {exc.first_over.line}: more than {exc.limit} "
            f"bad line(s) (--max-bad-lines {exc.limit})",
            file=sys.stderr,
        )
        return 1
    finally:
        if sink is not None:
            sink.close()
    for e in errors[:BAD_LINES_SHOWN]:
        print(e, file=sys.stderr)
    if errors:
        print(f"ringfence replay: {len(errors)} bad line(s) skipped", file=sys.stderr)
    if not summary.events:
        print(f"ringfence replay: {_no_events(tenant, events_path, seen)}", file=sys.stderr)
        return 1
    if decisions_path is not None:
        print(
            f"ringfence replay: {summary.events} decisions written to {decisions_path}",
            file=sys.stderr,
        )
    labels_json = labelling.to_json()
    for note in _label_notes(labels_json, summary.outcomes.labelled, summary.events):
        print(f"ringfence replay: {note}", file=sys.stderr)
    report = summarize(
        tenant,
        PolicyRun(str(ns.rules), base.version, summary),
        PolicyRun(str(ns.against), other.version, other_summary)
        if other is not None and other_summary is not None
        else None,
        diff,
        skipped_lines=len(errors),
        bad_lines=[(b.line, b.reason) for b in errors.lines(BAD_LINES_KEPT)],
        labels=labels_json,
    )
    if report_path is not None:
        from server.tools.report import render_html

        report_path.write_text(render_html(report), encoding="utf-8")
        print(f"ringfence replay: report written to {report_path}", file=sys.stderr)
    if ns.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(output.console(), report)
    return 0


def _count_lines(path: Path) -> int:
    """Lines in the file, for the progress bar's total (cheap next to a replay)."""
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _report_problem(path: Path) -> str:
    """Why the report could not be written, found before a long replay rather than after."""
    try:
        import server.tools.report  # noqa: F401 (plotly and jinja2 are an optional extra)
    except ImportError as exc:
        return f"{exc.name} is not installed: {install_hint('report')}"
    if not path.parent.is_dir():
        return f"no such directory: {path.parent}"
    return ""


def _decisions_problem(path: Path, parquet_problem: Callable[[], str]) -> str:
    from server.tools.decisions import PARQUET_SUFFIX

    if path.suffix.lower() == PARQUET_SUFFIX:
        problem = parquet_problem()
        if problem:
            return f"{problem}: {install_hint('parquet')} (or write JSON lines: a .jsonl name)"
    if not path.parent.is_dir():
        return f"no such directory: {path.parent}"
    return ""


def install_hint(extra: str) -> str:
    """How to install an optional extra where this ``ringfence`` runs: in a checkout (an
    editable install) the venv's pip on the checkout, else pip on the package."""
    import server

    pip = Path(sys.executable).with_name("pip")
    checkout = Path(server.__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        return f"{_shown_path(pip)} install -e '{_shown_path(checkout)}[{extra}]'"
    return f"{_shown_path(pip)} install 'ringfence[{extra}]'"


def _shown_path(p: Path) -> str:
    """``p`` relative to the working directory when it is under it (``.venv/bin/pip``)."""
    try:
        rel = p.relative_to(Path.cwd())
    except ValueError:
        return str(p)
    return str(rel) if str(rel) != "." else "."


def _no_events(tenant: str, path: Path, seen: Mapping[str, int]) -> str:
    if not seen:
        return f"no events for tenant {tenant!r} in {path}"
    top = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    listed = ", ".join(f"{name or '(none)'} ({n})" for name, n in top)
    more = f" and {len(seen) - 10} more" if len(seen) > 10 else ""
    return f"no events for tenant {tenant!r} in {path}; it has events for: {listed}{more}"


def _label_notes(labels: Mapping[str, Any], labelled: int, events: int) -> list[str]:
    """What an analyst should know about the labels before reading any rate."""
    notes = []
    file = labels.get("file")
    if file is not None and file["unmatched"]:
        notes.append(
            f"--labels: {file['unmatched']} of {file['request_ids']} request ids matched no"
            " event of the tenant"
        )
    odd = labels["unrecognised"]
    if odd:
        shown = ", ".join(f"{v!r} ({n})" for v, n in list(odd.items())[:8])
        notes.append(
            f"labels neither fraud nor good were left out: {shown}; name the fraud ones with"
            " --fraud-label (every other label then counts as good)"
        )
    if (labels["values"] or file is not None) and not labelled:
        notes.append("no event has a fraud or good label: no outcome rates")
    elif labelled and labelled < events:
        notes.append(f"{events - labelled} of {events} events have no outcome label")
    return notes


def print_report(out: Console, report: dict[str, Any]) -> None:
    _print_runs(out, report)
    if report["skipped_lines"]:
        _print_bad_lines(out, report)


def _print_bad_lines(out: Console, report: dict[str, Any]) -> None:
    from server.cli import output

    shown = report["bad_lines"]
    more = report["skipped_lines"] > len(shown)
    out.print()
    t = output.table(
        out,
        "line",
        "reason",
        title=f"{report['skipped_lines']} bad line(s) skipped"
        + (f", the first {len(shown)}" if more else ""),
        right=["line"],
    )
    for bad in shown:
        t.add_row(*output.cells(bad["line"], bad["reason"]))
    output.emit(out, t)


def _print_runs(out: Console, report: dict[str, Any]) -> None:
    from server.cli import output

    _print_policy(out, report["policy"])
    other = report.get("against")
    if other is None:
        return
    out.print()
    _print_policy(out, other)
    diff = report["diff"]
    out.print()
    output.line(
        out,
        f"decisions that differ: {diff['changed']} of {report['policy']['events']}"
        f" ({diff['actions_changed']} change the action, {diff['rules_only']} only which"
        " rules fired)",
    )
    t = output.table(out, "before", "after", "decisions", title="transitions", right=["decisions"])
    for key, n in diff["transitions"].items():
        before, _, after = key.partition("->")
        t.add_row(*output.cells(before, after, n))
    output.emit(out, t)
    heads = ("before only", "after only", "action changed")
    t = output.table(out, "rule", *heads, title="by rule", right=heads)
    for rule, c in diff["by_rule"].items():
        t.add_row(*output.cells(rule, c["before_only"], c["after_only"], c["action_changed"]))
    output.emit(out, t)
    for key, title in (("by_segment_kind", "segment kind"), ("by_app", "app")):
        t = output.table(out, title, "decisions", title=f"by {title}", right=["decisions"])
        for name, n in list(diff[key].items())[:GROUPS_SHOWN]:
            t.add_row(*output.cells(name, n))
        output.emit(out, t)
    t = output.table(
        out, "event", "at", "scene", "app", "phone", "before", "after", title="samples"
    )
    for s in diff["samples"]:
        before, after = s["before"], s["after"]
        t.add_row(
            *output.cells(
                s["event"],
                s["at"],
                s["scene"],
                s["app"],
                s["phone"],
                f"{before['action']} {','.join(before['rules']) or '-'}",
                f"{after['action']} {','.join(after['rules']) or '-'}",
            )
        )
    output.emit(out, t)


def _print_policy(out: Console, p: dict[str, Any]) -> None:
    from server.cli import output
    from server.tools.summary import ACTION_ORDER, RULE_COLUMNS

    rate = f" ({p['events_per_second']:,}/s)" if p["events_per_second"] else ""
    output.line(
        out,
        f"{p['rules_dir']} (version {p['version']}): {p['events']} events "
        f"in {p['seconds']:.2f} s{rate}",
        style="bold",
    )
    t = output.table(out, "action", "decisions", "share", right=["decisions", "share"])
    for action, n in p["actions"].items():
        t.add_row(*output.cells(action, n, f"{n / p['events']:.1%}"))
    output.emit(out, t)
    heads = [h for _, h in RULE_COLUMNS]
    numbers = [h for key, h in RULE_COLUMNS if isinstance(_first(p["rules"], key), int)]
    t = output.table(out, "rule", *heads, "fired as", "decided", right=numbers)
    for name, r in p["rules"].items():
        t.add_row(
            *output.cells(
                name,
                *(r[key] for key, _ in RULE_COLUMNS),
                output.counts(r["actions"], ACTION_ORDER) or "-",
                output.counts(r["decided"], ACTION_ORDER) or "-",
            )
        )
    output.emit(out, t)
    if p.get("outcomes"):
        _print_outcomes(out, p["outcomes"])
    if p["top_reasons"]:
        t = output.table(out, "rule", "reason", "count", title="top reasons", right=["count"])
        for r in p["top_reasons"][:TOP_REASONS_SHOWN]:
            t.add_row(*output.cells(r["rule"], r["reason"], r["count"]))
        output.emit(out, t)


def _print_outcomes(out: Console, o: dict[str, Any]) -> None:
    from server.cli import output
    from server.tools.outcomes import OUTCOME_COLUMNS, headline, outcome_rows, shown

    output.line(
        out,
        f"outcomes: {o['labelled']} labelled events, {o['fraud']} fraud"
        f" ({o['fraud_share']:.1%}), {o['good']} good; {headline(o)}",
    )
    heads = [h for _, h in OUTCOME_COLUMNS]
    t = output.table(out, "", *heads, title="outcomes", right=heads)
    for name, row in outcome_rows(o):
        t.add_row(*output.cells(name, *(shown(row.get(key)) for key, _ in OUTCOME_COLUMNS)))
    output.emit(out, t)


def _first(rules: dict[str, dict[str, Any]], key: str) -> Any:
    return next((r[key] for r in rules.values()), None)
