"""Lists of IP networks: data-centre, proxy and VPN ranges in CIDR form, with labels.

A list file holds phone numbers or networks (docs/lists.md); this module is the networks'
half: reading an entry (``1.2.3.0/24``, ``2001:db8::/32``, a single address) and the
index a policy looks ``event.ip`` up in, the longest prefix winning.

Built for a million entries like the number lists: at load time the networks of each
family are flattened into sorted segment starts, each segment holding the label of its
longest covering network (the same sweep as number ranges), so a lookup is one bisect over
an ``array``. IPv6 networks up to /64 (what feeds list: allocations, sites, subscribers)
are indexed by their upper 64 bits, so they fit the same unsigned 64-bit array; longer
IPv6 prefixes, always more specific than those, go to a small table of their own.
"""

from __future__ import annotations

import ipaddress
import socket
from array import array
from bisect import bisect_right
from collections.abc import Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any, Final

from dsl.addresses import parse_ip
from dsl.lists import NETWORKS
from server.lists.index import NO_LABEL, ListStats

_V4_BITS: Final = 32
_V6_BITS: Final = 128
_UPPER: Final = 64  # IPv6 networks up to /64 are indexed on the address's upper 64 bits


@dataclass(frozen=True, slots=True)
class Network:
    version: int
    low: int
    high: int
    bits: int


class NetworkError(ValueError):
    """Why an entry's text is not a network; the loader adds file:line."""


def looks_like_network(text: str) -> bool:
    """Whether an entry is written as an IP network or address rather than a number:
    it has a ``/`` or a ``:``, or is a dotted quad (no phone number is written so)."""
    if "/" in text or ":" in text:
        return True
    parts = text.split(".")
    return len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts)


def ipv4_network(text: str) -> tuple[int, int, int] | None:
    """``(4, network, prefix length)`` of a well-formed IPv4 network or address, or None
    for anything else (which :func:`parse_network` then reads, or explains). The loader's
    fast path: glibc's ``inet_pton`` is as strict as :mod:`ipaddress` for IPv4 (four
    decimal parts, no leading zeros, each at most 255) and ten times faster."""
    address, slash, length = text.partition("/")
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except OSError:
        return None
    if not slash:
        return 4, value, _V4_BITS
    if not (length.isascii() and length.isdigit()) or len(length) > 2:
        return None
    bits = int(length)
    host = _V4_BITS - bits
    if bits > _V4_BITS or value >> host << host != value:
        return None
    return 4, value, bits


def parse_network(text: str) -> Network:
    """``1.2.3.0/24``, ``2001:db8::/32``, or an address (a /32 or /128). Raises
    NetworkError saying what is wrong: a bad address, a bad length, host bits set."""
    address, slash, length = text.partition("/")
    address, length = address.strip(), length.strip()
    version, value = _address(address)
    width = _V4_BITS if version == 4 else _V6_BITS
    if slash:
        if not (length.isascii() and length.isdigit()) or len(length) > 3:
            raise NetworkError(f"bad network: prefix length {length[:8]!r} is not a number")
        bits = int(length)
        if bits > width:
            raise NetworkError(f"bad network: /{bits} is longer than an IPv{version} address")
    else:
        bits = width
    host = width - bits
    low = value >> host << host
    if low != value:
        shown = ipaddress.ip_address(low) if version == 6 else ipaddress.IPv4Address(low)
        raise NetworkError(f"bad network: host bits set (the network is {shown}/{bits})")
    return Network(version, low, low | ((1 << host) - 1), bits)


def _address(text: str) -> tuple[int, int]:
    # Not memoised: a list's million entries would only churn parse_ip's cache.
    found = parse_ip.__wrapped__(text) if "%" not in text else None
    if found is None or (found[0] == 4 and ":" in text):
        # A zone (fe80::1%eth0) names an interface; an IPv4-mapped form says twice what
        # one IPv4 network says once: neither belongs in a list.
        raise NetworkError(f"bad network: {text[:45]!r} is not an IP address")
    return found


class NetworkIndex:
    """A loaded list of networks; implements dsl.lists.ListView for IP addresses."""

    __slots__ = (
        "_labels",
        "_long_labels",
        "_long_starts",
        "_v4_labels",
        "_v4_starts",
        "_v6_labels",
        "_v6_starts",
        "label_columns",
        "name",
        "next_expiry",
        "path",
        "stats",
    )
    kind = NETWORKS

    def __init__(
        self,
        *,
        name: str,
        path: str,
        label_columns: tuple[str, ...],
        labels: Sequence[Mapping[str, str]],
        networks: Mapping[tuple[int, int, int], tuple[int, int]],
        skipped_expired: int = 0,
        duplicates: int = 0,
        next_expiry: date | None = None,
    ) -> None:
        """``networks``: (version, low, bits) -> (label, line)."""
        self.name = name
        self.path = path
        self.label_columns = label_columns
        self.next_expiry = next_expiry
        self._labels = tuple(labels)
        v4: list[tuple[int, int, int]] = []
        v6: list[tuple[int, int, int]] = []
        long: list[tuple[int, int, int]] = []
        for (version, low, bits), (label, _) in networks.items():
            if version == 4:
                v4.append((low, low | ((1 << (_V4_BITS - bits)) - 1), label))
            elif bits <= _UPPER:
                top = low >> _UPPER
                v6.append((top, top | ((1 << (_UPPER - bits)) - 1), label))
            else:
                long.append((low, low | ((1 << (_V6_BITS - bits)) - 1), label))
        self._v4_starts, self._v4_labels = _nested(v4, array("Q"), 1 << _V4_BITS)
        self._v6_starts, self._v6_labels = _nested(v6, array("Q"), 1 << _UPPER)
        # Few, and wider than 64 bits: a plain list (array holds 64 bits at most).
        starts, found = _nested(long, [], 1 << _V6_BITS)
        self._long_starts: list[int] = list(starts)
        self._long_labels: array[int] = found
        self.stats = ListStats(len(networks), 0, 0, skipped_expired, duplicates)

    def __getstate__(self) -> dict[str, Any]:
        """For pickling (a big list parsed in another process): label mappings as dicts."""
        state = {name: getattr(self, name) for name in self.__slots__}
        state["_labels"] = tuple(dict(m) for m in self._labels)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._labels = tuple(MappingProxyType(m) for m in state["_labels"])

    def labels(self, address: str) -> Mapping[str, str] | None:
        """Labels of the longest network holding ``address``; None when none does (or it
        is no address)."""
        if type(address) is not str:
            return None
        found = parse_ip(address)
        if found is None:
            return None
        version, value = found
        if version == 4:
            label = _find(self._v4_starts, self._v4_labels, value)
        else:
            label = NO_LABEL
            if self._long_starts:
                label = _find(self._long_starts, self._long_labels, value)
            if label == NO_LABEL:
                label = _find(self._v6_starts, self._v6_labels, value >> _UPPER)
        return None if label == NO_LABEL else self._labels[label]

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and self.labels(address) is not None

    def __len__(self) -> int:
        return self.stats.entries

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"NetworkIndex(name={self.name!r}, networks={s.entries},"
            f" skipped_expired={s.skipped_expired}, duplicates={s.duplicates})"
        )


def _nested(
    networks: list[tuple[int, int, int]], starts: MutableSequence[int], end: int
) -> tuple[MutableSequence[int], array[int]]:
    """Sorted segment starts and, per segment, the label of its longest covering network.

    Networks are nested or apart, never overlapping otherwise, so one pass over them
    sorted by start (the wider first) with a stack of the open ones does it: O(n) after
    the sort, with no range objects built.
    """
    labels: array[int] = array("q")

    def emit(point: int, label: int) -> None:
        if starts and starts[-1] == point:
            labels[-1] = label  # a network starting where another ended: it decides
            if len(labels) > 1 and labels[-2] == label:
                starts.pop()
                labels.pop()
        elif not labels or labels[-1] != label:
            starts.append(point)
            labels.append(label)

    open_: list[tuple[int, int]] = []  # (last address, label) of the networks around
    # By start, the wider first: (low, -high) sorts natively, with no key function.
    order = sorted((low, -high, label) for low, high, label in networks)
    for low, neg_high, label in order:
        high = -neg_high
        while open_ and open_[-1][0] < low:
            last, _ = open_.pop()
            emit(last + 1, open_[-1][1] if open_ else NO_LABEL)
        emit(low, label)
        open_.append((high, label))
    while open_:
        last, _ = open_.pop()
        if last + 1 < end:
            emit(last + 1, open_[-1][1] if open_ else NO_LABEL)
    return starts, labels


def _find(starts: Sequence[int], labels: Sequence[int], value: int) -> int:
    i = bisect_right(starts, value) - 1
    return labels[i] if i >= 0 else NO_LABEL
