"""What a replay saw, counted while it runs, and the one summary every output is built from.

Two collectors sit on replay's loop and must stay cheap (a few dict increments a decision):

* :class:`Summary` — one policy: actions, tags, rule hits live and shadow, the reasons
  given, and all of it per minute of event time.
* :class:`Diff` — two policies over the same events: the decisions that differ, by
  transition, rule, segment kind, app and minute, and a few masked samples.

:func:`summarize` turns them into one JSON-ready dict. ``ringfence replay --json`` prints it,
the terminal tables and the HTML report (:mod:`server.tools.report`) are drawn from it, so
every number shown anywhere is one of its numbers. Its shape is in docs/replay.md.

Per-minute counts are bucketed only at the end, in the policy's time zone, into at most
:data:`MAX_BUCKETS` buckets of a round width: a replay need not know its span in advance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from dsl.decision import Action, Decision
from server.phone.mask import mask
from server.tools.outcomes import Outcomes, rule_tuples


class Timed(Protocol):
    """Anything with an event time: a replayed event, or the event facts of one."""

    @property
    def occurred_at(self) -> float: ...


if TYPE_CHECKING:
    from dsl.policy import CompiledPolicy
    from server.tools.replay_input import ReplayEvent

MINUTE = 60
# Round bucket widths, smallest first; beyond a day, whole days.
BUCKET_WIDTHS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_BUCKETS = 120
TOP_REASONS = 15
# Reasons interpolate values ("7 list hits this hour"), so distinct texts can grow with the
# events; past this many per rule, new texts are only counted as untracked.
REASONS_PER_RULE = 1000
SAMPLES = 10
ACTION_ORDER = tuple(a.name.lower() for a in Action)  # unspecified, allow, review, block

# The per-rule fields, in table order: (JSON key, column heading). Every output shows
# these columns, so a new per-rule figure (a score, a priority) is a field on RuleStats,
# a value in RuleStats.to_json and one line here.
RULE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mode", "mode"),
    ("action", "action"),
    ("risk", "risk"),
    ("priority", "priority"),
    ("score", "score"),
    ("live", "live hits"),
    ("shadow", "shadow hits"),
)


def action_word(action: Action) -> str:
    """A rule's action for people: a rule that only adds a score has none."""
    return action.name.lower() if action else "score"


@dataclass
class RuleStats:
    mode: str = "live"  # as declared: "live" or "shadow"
    action: str = ""  # as declared
    risk: int = 0
    live: int = 0
    shadow: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    priority: int = 0  # as declared
    score: int = 0  # as declared: what a match adds to the decision's score
    # The decisions of the events it fired on: what a score-only rule's fires came to.
    decided: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "action": self.action,
            "risk": self.risk,
            "priority": self.priority,
            "score": self.score,
            "live": self.live,
            "shadow": self.shadow,
            "actions": dict(sorted(self.by_action.items())),
            "decided": _ordered_actions(self.decided),
        }


@dataclass
class Summary:
    events: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    rules: dict[str, RuleStats] = field(default_factory=dict)
    tags: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    timezone: str = "UTC"
    # (minute of event time, action) and (minute, rule, shadow) -> count
    action_minutes: Counter[tuple[int, str]] = field(default_factory=Counter)
    rule_minutes: Counter[tuple[int, str, bool]] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    reasons_untracked: int = 0
    outcomes: Outcomes = field(default_factory=Outcomes)

    @classmethod
    def for_policy(cls, policy: CompiledPolicy) -> Summary:
        """Every declared rule listed from the start, so a rule that never fires shows 0."""
        s = cls(
            timezone=policy.timezone or "UTC",
            outcomes=Outcomes.for_rules(rule_tuples(policy.rules)),
        )
        for r in policy.rules:
            s.rules[r.name] = RuleStats(
                mode="shadow" if r.shadow else "live",
                action=action_word(r.action),
                risk=r.risk_level,
                priority=r.priority,
                score=r.score,
            )
        return s

    def add(self, ev: Timed, d: Decision, fraud: bool | None = None) -> None:
        """Count one decision; ``ev`` is the event (its time is all a summary reads);
        ``fraud`` its outcome label (None: unlabelled)."""
        minute = int(ev.occurred_at // MINUTE)
        action = d.action.name.lower()
        self.events += 1
        self.actions[action] += 1
        self.action_minutes[(minute, action)] += 1
        if fraud is not None:
            self.outcomes.add(d, fraud)
        for tag in d.tags:
            self.tags[tag] += 1
        for m in d.matches:
            st = self.rules.get(m.rule)
            if st is None:
                st = self.rules[m.rule] = RuleStats(mode="shadow" if m.shadow else "live")
            if m.shadow:
                st.shadow += 1
            else:
                st.live += 1
            st.by_action[action_word(m.action)] += 1
            st.decided[action] += 1
            self.rule_minutes[(minute, m.rule, m.shadow)] += 1
            texts = self.reasons.get(m.rule)
            if texts is None:
                texts = self.reasons[m.rule] = Counter()
            if m.reason in texts or len(texts) < REASONS_PER_RULE:
                texts[m.reason] += 1
            else:
                self.reasons_untracked += 1

    def merge(self, other: Summary) -> None:
        """Fold in a summary of other events under the same policy (a parallel replay)."""
        self.events += other.events
        self.actions.update(other.actions)
        self.tags.update(other.tags)
        self.action_minutes.update(other.action_minutes)
        self.rule_minutes.update(other.rule_minutes)
        self.reasons_untracked += other.reasons_untracked
        self.outcomes.merge(other.outcomes)
        for name, st in other.rules.items():
            mine = self.rules.setdefault(
                name,
                RuleStats(st.mode, st.action, st.risk, priority=st.priority, score=st.score),
            )
            mine.live += st.live
            mine.shadow += st.shadow
            mine.by_action.update(st.by_action)
            mine.decided.update(st.decided)
        for name, texts in other.reasons.items():
            self.reasons.setdefault(name, Counter()).update(texts)

    def minutes(self) -> set[int]:
        return {m for m, _ in self.action_minutes}

    def to_json(self) -> dict[str, Any]:
        """The totals alone (no time series): what ``--json`` printed before reports."""
        return {
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds) if self.seconds else None,
            "actions": _ordered_actions(self.actions),
            "tags": dict(sorted(self.tags.items())),
            "rules": {name: s.to_json() for name, s in sorted(self.rules.items())},
            "outcomes": self.outcomes.to_json(),
        }

    def top_reasons(self, n: int = TOP_REASONS) -> list[dict[str, Any]]:
        flat = [
            (count, rule, text)
            for rule, texts in self.reasons.items()
            for text, count in texts.items()
        ]
        flat.sort(key=lambda t: (-t[0], t[1], t[2]))
        return [{"rule": r, "reason": t, "count": c} for c, r, t in flat[:n]]


@dataclass
class Diff:
    total: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    # rule -> "before_only" | "after_only" | "action_changed" -> decisions
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)
    by_segment_kind: Counter[str] = field(default_factory=Counter)
    by_app: Counter[str] = field(default_factory=Counter)
    minutes: Counter[int] = field(default_factory=Counter)
    sample_limit: int = SAMPLES
    # The first samples of each transition: the samples shown are drawn from every kind of
    # change in turn, not only from whichever change came first in the file.
    pool: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def actions_changed(self) -> int:
        """Decisions whose action changed (the rest changed only which rules fired)."""
        return sum(n for (a, b), n in self.transitions.items() if a != b)

    def add(self, ev: ReplayEvent, before: Decision, after: Decision) -> None:
        """Compare the two decisions on one event; count them if they differ."""
        rules_a = {m.rule: m.action for m in before.matches}
        rules_b = {m.rule: m.action for m in after.matches}
        if before.action == after.action and rules_a.keys() == rules_b.keys():
            return
        self.total += 1
        old, new = before.action.name.lower(), after.action.name.lower()
        self.transitions[(old, new)] += 1
        for rule in rules_a.keys() | rules_b.keys():
            a, b = rules_a.get(rule), rules_b.get(rule)
            how = "after_only" if a is None else "before_only" if b is None else None
            if how is None and a != b:
                how = "action_changed"
            if how is not None:
                self.by_rule.setdefault(rule, Counter())[how] += 1
        self.by_segment_kind[ev.phone.segment_kind or "(none)"] += 1
        self.by_app[ev.event.app_id or "(none)"] += 1
        self.minutes[int(ev.occurred_at // MINUTE)] += 1
        kept = self.pool.setdefault((old, new), [])
        if len(kept) < self.sample_limit:
            kept.append(
                {
                    "event": ev.key,
                    "occurred_at": ev.occurred_at,
                    "scene": ev.event.scene,
                    "app": ev.event.app_id,
                    "segment_kind": ev.phone.segment_kind,
                    # Never the number itself: a report travels further than a log.
                    "phone": mask(ev.phone.e164),
                    "before": {"action": old, "rules": [m.rule for m in before.matches]},
                    "after": {"action": new, "rules": [m.rule for m in after.matches]},
                }
            )

    @property
    def samples(self) -> list[dict[str, Any]]:
        """Up to ``sample_limit`` samples, taken in turn from each transition (changes of
        action first, the most frequent first), then in event-time order."""
        order = sorted(self.pool, key=lambda t: (t[0] == t[1], -self.transitions[t], t))
        picked: list[dict[str, Any]] = []
        depth = 0
        while len(picked) < self.sample_limit and any(len(self.pool[t]) > depth for t in order):
            for t in order:
                if len(picked) < self.sample_limit and len(self.pool[t]) > depth:
                    picked.append(self.pool[t][depth])
            depth += 1
        return sorted(picked, key=lambda s: (s["occurred_at"], str(s["event"])))

    def merge(self, other: Diff) -> None:
        self.total += other.total
        self.transitions.update(other.transitions)
        for t, more in other.pool.items():
            kept = self.pool.setdefault(t, [])
            kept.extend(more[: max(self.sample_limit - len(kept), 0)])
        for rule, counts in other.by_rule.items():
            self.by_rule.setdefault(rule, Counter()).update(counts)
        self.by_segment_kind.update(other.by_segment_kind)
        self.by_app.update(other.by_app)
        self.minutes.update(other.minutes)


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """One policy's side of a replay, as the report names it."""

    rules_dir: str
    version: str
    summary: Summary


@dataclass(frozen=True, slots=True)
class Buckets:
    """Minutes of event time grouped into round buckets of local (policy) time."""

    timezone: str
    width: int  # seconds
    first: int  # bucket number of the first bucket (local seconds // width)
    labels: tuple[str, ...]
    _offsets: Mapping[int, int] = field(repr=False)  # hour -> UTC offset in seconds

    @classmethod
    def spanning(cls, minutes: Iterable[int], timezone: str) -> Buckets:
        zone = ZoneInfo(timezone)
        offsets: dict[int, int] = {}
        local: list[int] = []
        for minute in minutes:
            hour = minute // 60
            off = offsets.get(hour)
            if off is None:
                at = datetime.fromtimestamp(hour * 3600, zone)
                off = offsets[hour] = int((at.utcoffset() or timedelta()).total_seconds())
            local.append(minute * MINUTE + off)
        if not local:
            return cls(timezone, 3600, 0, (), offsets)
        lo, hi = min(local), max(local)
        width = _width(hi - lo + MINUTE)
        first, last = lo // width, hi // width
        fmt = "%Y-%m-%d" if width >= 86400 else "%Y-%m-%d %H:%M"
        labels = tuple(
            datetime.fromtimestamp(b * width, UTC).strftime(fmt) for b in range(first, last + 1)
        )
        return cls(timezone, width, first, labels, offsets)

    def index(self, minute: int) -> int:
        hour = minute // 60
        off = self._offsets.get(hour)
        if off is None:  # a minute the span was not built from: look it up
            at = datetime.fromtimestamp(hour * 3600, ZoneInfo(self.timezone))
            off = int((at.utcoffset() or timedelta()).total_seconds())
        return (minute * MINUTE + off) // self.width - self.first

    def label(self, epoch: float) -> str:
        at = datetime.fromtimestamp(epoch, ZoneInfo(self.timezone))
        return at.strftime("%Y-%m-%d %H:%M:%S")

    def series(self, counts: Iterable[tuple[int, int]]) -> list[int]:
        """(minute, count) pairs -> one count per bucket."""
        out = [0] * len(self.labels)
        for minute, n in counts:
            out[self.index(minute)] += n
        return out

    def to_json(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "bucket_seconds": self.width, "buckets": self.labels}


def _width(span: int) -> int:
    for w in BUCKET_WIDTHS:
        if span <= w * MAX_BUCKETS:
            return w
    days = -(-span // (86400 * MAX_BUCKETS))
    return 86400 * days


def _ordered_actions(counts: Mapping[str, int]) -> dict[str, int]:
    return {a: counts[a] for a in ACTION_ORDER if counts.get(a)}


def _policy_json(run: PolicyRun, buckets: Buckets) -> dict[str, Any]:
    s = run.summary
    out = {"rules_dir": run.rules_dir, "version": run.version, **s.to_json()}
    per_action: dict[str, list[tuple[int, int]]] = {}
    for (minute, action), n in s.action_minutes.items():
        per_action.setdefault(action, []).append((minute, n))
    out["actions_over_time"] = {
        a: buckets.series(per_action[a]) for a in ACTION_ORDER if a in per_action
    }
    per_rule: dict[tuple[str, bool], list[tuple[int, int]]] = {}
    for (minute, rule, shadow), n in s.rule_minutes.items():
        per_rule.setdefault((rule, shadow), []).append((minute, n))
    out["rules_over_time"] = {
        kind: {
            rule: buckets.series(pairs)
            for (rule, shadow), pairs in sorted(per_rule.items())
            if shadow == (kind == "shadow")
        }
        for kind in ("live", "shadow")
    }
    out["top_reasons"] = s.top_reasons()
    out["reasons_untracked"] = s.reasons_untracked
    return out


def summarize(
    tenant: str,
    base: PolicyRun,
    other: PolicyRun | None = None,
    diff: Diff | None = None,
    *,
    skipped_lines: int = 0,
    bad_lines: Iterable[tuple[int, str]] = (),
    labels: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The one summary of a replay: what ``--json`` prints and every other output shows.
    ``bad_lines`` are the first skipped lines (number, reason); ``skipped_lines`` counts
    them all; ``labels`` says where outcome labels came from
    (:meth:`server.tools.outcomes.Labelling.to_json`)."""
    minutes = base.summary.minutes()
    if other is not None:
        minutes |= other.summary.minutes()
    buckets = Buckets.spanning(sorted(minutes), base.summary.timezone)
    out: dict[str, Any] = {
        "tenant": tenant,
        "skipped_lines": skipped_lines,
        "bad_lines": [{"line": line, "reason": reason} for line, reason in bad_lines],
        "timeline": buckets.to_json(),
        "policy": _policy_json(base, buckets),
    }
    if labels is not None:
        out["labels"] = dict(labels)
    if other is not None:
        out["against"] = _policy_json(other, buckets)
    if diff is not None and other is not None:
        samples = [
            {
                **{k: v for k, v in s.items() if k != "occurred_at"},
                "at": buckets.label(s["occurred_at"]),
            }
            for s in diff.samples
        ]
        out["diff"] = {
            "changed": diff.total,
            "actions_changed": diff.actions_changed,
            "rules_only": diff.total - diff.actions_changed,
            "transitions": {f"{a}->{b}": n for (a, b), n in sorted(diff.transitions.items())},
            "by_rule": {
                rule: {k: counts[k] for k in ("before_only", "after_only", "action_changed")}
                for rule, counts in sorted(diff.by_rule.items())
            },
            "by_segment_kind": _by_count(diff.by_segment_kind),
            "by_app": _by_count(diff.by_app),
            "over_time": buckets.series(diff.minutes.items()),
            "samples": samples,
        }
    return out


def _by_count(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
