"""Time zones by IANA name, the one place a name from a policy or tenant.toml is looked up.

``ZoneInfo`` reads a file named after its argument: a name like ``America`` (a folder),
one longer than a file name may be, or one with odd characters raises errors that are not
``ZoneInfoNotFoundError`` (IsADirectoryError, OSError), and their text shows where Python
is installed. Names are checked for shape first and every failure is "unknown".
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,29}(?:/[A-Za-z0-9_+-]{1,30}){0,2}")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo | None:
    """The zone, or None for a name that is not a known IANA zone."""
    if not _NAME.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except Exception:  # not found, a folder, too long, unreadable: all "unknown"
        return None
