"""Did-you-mean: the name an author most likely meant, from every name in scope.

Three kinds of slip, tried in order: a word from another vocabulary (``segment_type`` for
``segment_kind``, ``scenario`` for ``scene``), a part of the name (``hour`` for
``local_hour``), and a typo (edit distance, transpositions counted as one edit).
Candidates may be dotted (``event.local_hour``); the last part is what is compared.
"""

from __future__ import annotations

from collections.abc import Iterable

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

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
    # A typo: the fewest edits (transpositions count as one), about one per three
    # characters allowed; rapidfuzz does the comparisons in C, so thousands of names in
    # scope cost a fraction of a millisecond.
    limit = max(1, len(lower) // 3)
    tails = list(by_tail)
    found = process.extract(lower, tails, scorer=OSA.distance, score_cutoff=limit, limit=None)
    if found:
        best = min(d for _, d, _ in found)
        ties = [by_tail[t][0] for t, d, _ in found if d == best]
        return max(ties, key=lambda c: (fuzz.ratio(name, c), c)) if len(ties) > 1 else ties[0]
    close = process.extractOne(lower, tails, scorer=fuzz.ratio, score_cutoff=75)
    return by_tail[close[0]][0] if close else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` or nothing."""
    found = closest(name, candidates)
    return f"; did you mean '{found}'?" if found is not None and found != name else ""
