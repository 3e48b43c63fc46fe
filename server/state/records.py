"""The claim record the Redis script keeps per request id: built here, parsed here.

``<fingerprint>\n<receipt ms>\n<json [now, [ref ids]]>\n<value>,<value>,...``. The
script compares the fingerprint line, reads the receipt time (the idempotency window is
counted on the receipt clock, docs/state.md §8) and appends the values; the JSON line is
opaque to it, so ids and times need no escaping of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence


def fingerprint_line(fingerprint: str) -> str:
    return fingerprint + "\n"


def header(fingerprint: str, received_ms: str, now: float, ids: Sequence[str]) -> str:
    return fingerprint_line(fingerprint) + received_ms + "\n" + json.dumps([now, list(ids)]) + "\n"


def parse(record: bytes) -> tuple[float, dict[str, int]]:
    """(event time of the first attempt, its values by ref id). Raises ValueError when the
    record is not one of ours."""
    _, _, head, values = record.decode("utf-8").split("\n", 3)
    now, ids = json.loads(head)
    numbers = [int(float(v)) for v in values.split(",")] if values else []
    if not isinstance(ids, list) or len(ids) != len(numbers):
        raise ValueError("claim record does not match its ids")
    return float(now), dict(zip((str(i) for i in ids), numbers, strict=True))
