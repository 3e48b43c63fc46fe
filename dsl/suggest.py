"""Did-you-mean: the name an author most likely meant, from every name in scope.

Three kinds of slip, tried in order: a word from another vocabulary (``segment_type`` for
``segment_kind``, ``scenario`` for ``scene``), a part of the name (``hour`` for
``local_hour``), and a typo (edit distance, transpositions counted as one edit).
Candidates may be dotted (``event.local_hour``); the last part is what is compared.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Words people bring from other systems, and ours.
SYNONYMS = {
    "type": "kind",
    "kinds": "kind",
    "scenario": "scene",
    "scenes": "scene",
    "hour": "local_hour",
    "weekday": "local_weekday",
    "day": "local_weekday",
    "dow": "local_weekday",
    "country": "country_code",
    "cc": "country_code",
    "operator": "carrier",
    "isp": "carrier",
    "app": "app_id",
    "application": "app_id",
    "device": "device_id",
    "number": "e164",
    "msisdn": "e164",
    "time": "occurred_at",
    "timestamp": "occurred_at",
    "ts": "occurred_at",
    "attrs": "attributes",
    "attribute": "attributes",
    "deny": "block",
    "reject": "block",
    "decline": "block",
    "accept": "allow",
    "pass": "allow",
    "permit": "allow",
    "manual": "review",
    "challenge": "review",
    "tz": "timezone",
    "time_zone": "timezone",
}


def _tail(candidate: str) -> str:
    return candidate.rsplit(".", 1)[-1]


def distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein plus adjacent transpositions)."""
    if abs(len(a) - len(b)) > 3:
        return 99
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``name`` most likely stands for, or None if none is close."""
    pool = sorted(set(candidates))
    if not pool or not name or len(name) > 64:
        return None
    lower = name.lower()
    by_tail: dict[str, list[str]] = {}
    for c in pool:
        by_tail.setdefault(_tail(c).lower(), []).append(c)
    if lower in by_tail and name not in pool:
        return by_tail[lower][0]  # only the case differs
    # Another vocabulary: swap words for ours (segment_type -> segment_kind).
    words = lower.split("_")
    for i, w in enumerate(words):
        if w in SYNONYMS:
            swapped = "_".join([*words[:i], SYNONYMS[w], *words[i + 1 :]])
            if swapped in by_tail:
                return by_tail[swapped][0]
    # A part of the name: "hour" for local_hour, "segment" for segment_kind is too vague
    # when several candidates share it, so only a single containing candidate counts.
    if len(lower) >= 3:
        containing = [c for t, cs in by_tail.items() if lower in t.split("_") for c in cs]
        if len(containing) == 1:
            return containing[0]
    # A typo: the fewest edits, allowing about one per three characters.
    limit = max(1, len(lower) // 3)
    scored = [(distance(lower, t), c) for t, cs in by_tail.items() for c in cs]
    best = min(scored, default=(99, ""))
    if best[0] <= limit:
        ties = [c for d, c in scored if d == best[0]]
        ranked = difflib.get_close_matches(name, ties, n=1, cutoff=0.0)
        return ranked[0] if ranked else best[1]
    close = difflib.get_close_matches(lower, list(by_tail), n=1, cutoff=0.75)
    return by_tail[close[0]][0] if close else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` or nothing."""
    found = closest(name, candidates)
    return f"; did you mean '{found}'?" if found is not None and found != name else ""
