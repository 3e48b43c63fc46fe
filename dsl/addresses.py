"""IP addresses as policies see them: the family and the network of ``per ip/N``.

``event.ip`` is caller text. It is an address when :mod:`ipaddress` reads it (no
surrounding spaces, no leading zeros in IPv4); an IPv4 address written as IPv4-mapped IPv6
(``::ffff:1.2.3.4``, what dual-stack sockets report) is that IPv4 address. Anything else is
no address: it has no network, no location, and is on no network list. Pure and memoised:
one decision asks about its address several times (the plan, each rule).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Final

V4_BITS: Final = 32
V6_BITS: Final = 128


@lru_cache(maxsize=8192)
def parse_ip(text: str) -> tuple[int, int] | None:
    """``(version, address as an int)`` of an IP address, or None when ``text`` is not one."""
    if not text or len(text) > 64:
        return None
    if ":" not in text:
        return _v4(text)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6:
        assert isinstance(addr, ipaddress.IPv6Address)
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return 4, int(mapped)
        return 6, int(addr)
    return 4, int(addr)


def _v4(text: str) -> tuple[int, int] | None:
    """A dotted quad as ipaddress reads it (four decimal parts, no leading zeros, each at
    most 255), without building an address object: most traffic is IPv4. Writing the parts
    back is the strictness test: a sign, a space, an underscore or a leading zero that
    ``int()`` forgives changes the text."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    try:
        a, b, c, d = map(int, parts)
    except ValueError:
        return None
    if a | b | c | d > 255 or min(a, b, c, d) < 0 or f"{a}.{b}.{c}.{d}" != text:
        return None
    return 4, a << 24 | b << 16 | c << 8 | d


def ip_version(text: str) -> int:
    """4 or 6; 0 when ``text`` is not an address."""
    found = parse_ip(text)
    return 0 if found is None else found[0]


@lru_cache(maxsize=8192)
def ip_network(text: str, bits: int) -> str:
    """The ``per ip/N`` key of an address: its /``bits`` network as CIDR text
    (``1.2.3.0/24``, ``2001:db8:1:2::/64``). ``bits`` up to 32 is an IPv4 network and
    anything else (an IPv6 address, no address) has none (``""``); above 32 an IPv6
    network, which IPv4 addresses have none of."""
    found = parse_ip(text)
    if found is None:
        return ""
    version, value = found
    if bits <= V4_BITS:
        if version != 4:
            return ""
        base = value >> (V4_BITS - bits) << (V4_BITS - bits)
        return f"{ipaddress.IPv4Address(base)}/{bits}"
    if version != 6 or bits > V6_BITS:
        return ""
    base = value >> (V6_BITS - bits) << (V6_BITS - bits)
    return f"{ipaddress.IPv6Address(base)}/{bits}"
