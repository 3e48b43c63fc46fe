"""The view of an intelligence list that a policy reads. Loading lives in the server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class ListView(Protocol):
    """A loaded list: exact numbers, prefixes and ranges, each entry with labels.

    Lookups take an E.164 number (``+8613800138000``). ``labels`` returns the labels of
    the most specific entry that matches (exact, then longest prefix, then narrowest
    range), or None when the number is not on the list.
    """

    def __contains__(self, e164: object) -> bool: ...

    def labels(self, e164: str) -> Mapping[str, str] | None: ...

    def __len__(self) -> int: ...
