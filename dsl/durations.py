"""Durations as written in policies (``10m``, ``1h30m``, ``7d``) and back."""

from __future__ import annotations

import re

UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Durations are 64-bit seconds like every integer in a policy (far beyond any window).
MAX_SECONDS = 2**63 - 1
MAX_DIGITS = 19
_PART = re.compile(r"([0-9]+)([a-zA-Z_][a-zA-Z_]*)")


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> int:
    """Seconds in ``text``; raises DurationError naming the bad unit."""
    pos = 0
    total = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise DurationError(f"malformed duration '{text}'")
        unit = m.group(2)
        if unit not in UNITS:
            raise DurationError(f"unknown duration unit '{unit}' in '{text}' (use s, m, h, d or w)")
        digits = m.group(1)
        # Checked before int(): a 5,000-digit count must be an error, not a crash.
        if len(digits) > MAX_DIGITS:
            raise DurationError(f"duration '{text[:40]}' is too long")
        total += int(digits) * UNITS[unit]
        pos = m.end()
    if total > MAX_SECONDS:
        raise DurationError(f"duration '{text[:40]}' is too long")
    return total


def format_duration(seconds: int) -> str:
    """The shortest canonical spelling: ``3600`` -> ``1h``, ``5400`` -> ``1h30m``."""
    if seconds == 0:
        return "0s"
    out = []
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)
