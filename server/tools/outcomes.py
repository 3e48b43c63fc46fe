"""Outcome-labelled backtests: what a policy and each of its rules would have caught.

An event's outcome comes from its own ``label`` field or from a labels file joined on
``request_id`` (the file wins: chargebacks and confirmed fraud arrive after the event). A
label is *fraud*, *good* or neither (unlabelled, left out of every rate):
:class:`LabelReader` decides which, from ``--fraud-label`` when given (those values are
fraud, every other value good) or else from common words (docs/replay.md).

:class:`Outcomes` sits on replay's loop beside :class:`server.tools.summary.Summary` and
counts, per labelled decision, a handful of integers; rates are computed once, in
:meth:`Outcomes.to_json`. Definitions (docs/replay.md):

* the policy *catches* an event it reviews or blocks (``review_or_block``), or blocks
  (``block``); a rule catches an event it fired on (live or shadow, whatever the decision);
* caught = fraud caught, false alarms = good events caught, missed = fraud not caught;
  precision = caught / (caught + false alarms), recall = caught / fraud, lift = precision
  / the share of fraud among labelled events;
* *alone*: caught by this rule and by no other live rule that flags (a live rule whose
  action is review or block, or that adds a positive score), i.e. what the live policy
  would lose without it, or what a shadow rule would add if made live.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsl.decision import Action, Decision

# Label words understood without --fraud-label (compared in lower case).
FRAUD_WORDS = frozenset(
    {"fraud", "fraudulent", "bad", "abuse", "chargeback", "positive", "1", "true", "yes"}
)
GOOD_WORDS = frozenset(
    {"good", "legit", "legitimate", "genuine", "normal", "ok", "negative", "0", "false", "no"}
)
# Distinct label values counted by name; labels are untrusted text, so the table is bounded.
LABEL_VALUES_KEPT = 100


class LabelsFileError(ValueError):
    """A labels file that cannot be used: ``path:line: reason``."""


class LabelReader:
    """Label text -> True (fraud), False (good) or None (neither: unlabelled)."""

    def __init__(self, fraud_labels: Iterable[str] = ()) -> None:
        self.fraud_labels = frozenset(v.strip().lower() for v in fraud_labels if v.strip())
        self._seen: dict[str, bool | None] = {}
        self.values: Counter[str] = Counter()  # label text -> events (at most LABEL_VALUES_KEPT)
        self.values_untracked = 0

    def outcome(self, text: str | None) -> bool | None:
        if text is None:
            return None
        if text in self._seen:
            found = self._seen[text]
        else:
            word = text.lower()
            if self.fraud_labels:
                found = word in self.fraud_labels
            else:
                found = True if word in FRAUD_WORDS else False if word in GOOD_WORDS else None
            if len(self._seen) < 10 * LABEL_VALUES_KEPT:
                self._seen[text] = found
        if text in self.values or len(self.values) < LABEL_VALUES_KEPT:
            self.values[text] += 1
        else:
            self.values_untracked += 1
        return found

    def unrecognised(self) -> dict[str, int]:
        """Label values that are neither fraud nor good (only without --fraud-label)."""
        if self.fraud_labels:
            return {}
        return {
            v: n
            for v, n in sorted(self.values.items(), key=lambda kv: (-kv[1], kv[0]))
            if v.lower() not in FRAUD_WORDS and v.lower() not in GOOD_WORDS
        }


def read_labels(path: Path) -> dict[str, str]:
    """request_id -> label from a labels file: CSV with a header naming ``request_id`` and
    ``label`` columns (a ``.csv`` file), else JSON lines ``{"request_id": ..., "label": ...}``.
    Raises LabelsFileError naming the line: a labels file is small and made by hand, so a
    mistake stops the run before it starts rather than skewing every rate."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsFileError(f"{path}: cannot read: {exc}") from None
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _json_rows(path, text)
    out: dict[str, str] = {}
    for line, rid, label in rows:
        if not rid:
            raise LabelsFileError(f"{path}:{line}: no request_id")
        if not label:
            raise LabelsFileError(f"{path}:{line}: no label for request_id {rid[:80]!r}")
        before = out.setdefault(rid, label)
        if before != label:
            raise LabelsFileError(
                f"{path}:{line}: request_id {rid[:80]!r} is labelled both {before[:40]!r} and"
                f" {label[:40]!r}"
            )
    return out


def _csv_rows(path: Path, text: str) -> Iterable[tuple[int, str, str]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    for want in ("request_id", "label"):
        if want not in header:
            raise LabelsFileError(
                f"{path}:1: the header has no '{want}' column (it has: {', '.join(header)[:200]})"
            )
    reader.fieldnames = header
    for n, row in enumerate(reader, 2):
        yield n, (row.get("request_id") or "").strip(), (row.get("label") or "").strip()


def _json_rows(path: Path, text: str) -> Iterable[tuple[int, str, str]]:
    for n, raw in enumerate(text.splitlines(), 1):
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            raise LabelsFileError(f"{path}:{n}: not JSON") from None
        if not isinstance(obj, dict):
            raise LabelsFileError(f"{path}:{n}: not a JSON object")
        rid, label = obj.get("request_id"), obj.get("label")
        if isinstance(label, bool):
            label = "true" if label else "false"
        if not isinstance(rid, str | int) or isinstance(rid, bool):
            raise LabelsFileError(f"{path}:{n}: request_id must be a string")
        if not isinstance(label, str | int | float):
            raise LabelsFileError(f"{path}:{n}: label must be a string, a number or a bool")
        yield n, str(rid).strip(), str(label).strip()


@dataclass
class Outcomes:
    """One policy's outcome counts over the labelled events it decided."""

    # Live rules that flag (review or block, or a positive score): "alone" is against these.
    flagging: frozenset[str] = frozenset()
    fraud: int = 0
    good: int = 0
    # [good, fraud] counts, indexed by the outcome (False, True).
    blocked: list[int] = field(default_factory=lambda: [0, 0])
    flagged: list[int] = field(default_factory=lambda: [0, 0])
    rules: dict[str, list[int]] = field(default_factory=dict)  # [good, fraud]
    alone: dict[str, list[int]] = field(default_factory=dict)  # [good, fraud]

    @classmethod
    def for_rules(cls, rules: Iterable[tuple[str, bool, Action, int]]) -> Outcomes:
        """``rules``: (name, shadow, action, score) of every declared rule."""
        out = cls()
        flagging = set()
        for name, shadow, action, score in rules:
            out.rules[name] = [0, 0]
            out.alone[name] = [0, 0]
            if not shadow and (action >= Action.REVIEW or score > 0):
                flagging.add(name)
        out.flagging = frozenset(flagging)
        return out

    def add(self, d: Decision, fraud: bool) -> None:
        k = 1 if fraud else 0
        if fraud:
            self.fraud += 1
        else:
            self.good += 1
        action = d.action
        if action >= Action.REVIEW:
            self.flagged[k] += 1
            if action is Action.BLOCK:
                self.blocked[k] += 1
        matches = d.matches
        if not matches:
            return
        flagging = self.flagging
        flags = sum(1 for m in matches if not m.shadow and m.rule in flagging)
        for m in matches:
            name = m.rule
            counts = self.rules.get(name)
            if counts is None:
                counts = self.rules[name] = [0, 0]
                self.alone[name] = [0, 0]
            counts[k] += 1
            mine = 1 if (not m.shadow and name in flagging) else 0
            if flags - mine == 0:
                self.alone[name][k] += 1

    def merge(self, other: Outcomes) -> None:
        self.fraud += other.fraud
        self.good += other.good
        for mine, theirs in ((self.blocked, other.blocked), (self.flagged, other.flagged)):
            mine[0] += theirs[0]
            mine[1] += theirs[1]
        for table, more in ((self.rules, other.rules), (self.alone, other.alone)):
            for name, (g, f) in more.items():
                row = table.setdefault(name, [0, 0])
                row[0] += g
                row[1] += f

    @property
    def labelled(self) -> int:
        return self.fraud + self.good

    def to_json(self) -> dict[str, Any] | None:
        """The counts and rates (docs/replay.md), or None when no event was labelled."""
        if not self.labelled:
            return None
        base = self.fraud / self.labelled

        def scored(good: int, fraud: int) -> dict[str, Any]:
            return rates(fraud, good, self.fraud, base)

        return {
            "labelled": self.labelled,
            "fraud": self.fraud,
            "good": self.good,
            "fraud_share": _round(base),
            "policy": {
                "block": scored(*self.blocked),
                "review_or_block": scored(*self.flagged),
            },
            "rules": {
                name: {
                    **scored(*counts),
                    "alone_caught": self.alone[name][1],
                    "alone_false_alarms": self.alone[name][0],
                }
                for name, counts in sorted(self.rules.items())
            },
        }


def rates(caught: int, false_alarms: int, fraud: int, base: float) -> dict[str, Any]:
    """caught, missed, false alarms and the rates; a rate with nothing to divide by is None."""
    fired = caught + false_alarms
    precision = caught / fired if fired else None
    return {
        "caught": caught,
        "missed": fraud - caught,
        "false_alarms": false_alarms,
        "precision": _round(precision),
        "recall": _round(caught / fraud) if fraud else None,
        "lift": _round(precision / base) if precision is not None and base else None,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# The outcome columns every output shows, in order: (JSON key, heading). Like
# summary.RULE_COLUMNS, the terminal table and the page's table both follow this list.
OUTCOME_COLUMNS: tuple[tuple[str, str], ...] = (
    ("caught", "caught"),
    ("missed", "missed"),
    ("false_alarms", "false alarms"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("lift", "lift"),
    ("alone_caught", "caught alone"),
    ("alone_false_alarms", "false alarms alone"),
)


def outcome_rows(o: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The rows of an outcomes table: the policy (block, review or block), then each rule."""
    rows: list[tuple[str, Mapping[str, Any]]] = [
        ("policy: block", o["policy"]["block"]),
        ("policy: review or block", o["policy"]["review_or_block"]),
    ]
    rows += [(f"rule {name}", r) for name, r in o["rules"].items()]
    return rows


def shown(value: Any) -> str:
    """A cell: rates as 0.123, a missing rate as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def headline(o: Mapping[str, Any]) -> str:
    """'caught 41 of 50 fraud (82.0 %) at a cost of 7 good events (review or block)'."""
    p = o["policy"]["review_or_block"]
    share = f" ({p['caught'] / o['fraud']:.1%})" if o["fraud"] else ""
    return (
        f"caught {p['caught']} of {o['fraud']} fraud{share} at a cost of"
        f" {p['false_alarms']} of {o['good']} good (reviewed or blocked);"
        f" blocked {o['policy']['block']['caught']} fraud and"
        f" {o['policy']['block']['false_alarms']} good"
    )


def rule_tuples(
    rules: Sequence[Any],
) -> list[tuple[str, bool, Action, int]]:
    """(name, shadow, action, score) of a compiled policy's rules."""
    return [(r.name, r.shadow, r.action, r.score) for r in rules]


class Labelling:
    """Where a replay takes each event's outcome from: its own label, or the labels file's
    for its request_id (the file wins)."""

    def __init__(self, reader: LabelReader, by_request: Mapping[str, str] | None = None) -> None:
        self.reader = reader
        self.by_request = by_request or {}
        self.matched: set[str] = set()

    def of(self, label: str | None, request_id: str) -> tuple[str | None, bool | None]:
        """(the label used, fraud True / good False / None unlabelled)."""
        if self.by_request and request_id:
            found = self.by_request.get(request_id)
            if found is not None:
                self.matched.add(request_id)
                label = found
        return label, self.reader.outcome(label)

    def restart(self) -> None:
        """Forget what was counted: the replay starts over (in sorted order)."""
        self.reader.values.clear()
        self.reader.values_untracked = 0
        self.matched.clear()

    def to_json(self) -> dict[str, Any]:
        r = self.reader
        out: dict[str, Any] = {
            "fraud_labels": sorted(r.fraud_labels),
            "values": dict(sorted(r.values.items(), key=lambda kv: (-kv[1], kv[0]))),
            "values_untracked": r.values_untracked,
            "unrecognised": r.unrecognised(),
        }
        if self.by_request:
            out["file"] = {
                "request_ids": len(self.by_request),
                "matched": len(self.matched),
                "unmatched": len(self.by_request) - len(self.matched),
            }
        return out
