"""Lists of IP networks: CIDR entries and their errors, the longest prefix winning for
IPv4 and IPv6 (brute-forced against ipaddress), expiry, and a list being one kind only."""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.lists import NETWORKS, NUMBERS, kind_of
from server.lists import ListIndex, ListLoadError, NetworkIndex, load_list, parse_list
from server.lists.networks import NetworkError, looks_like_network, parse_network

TODAY = date(2026, 1, 15)


def _load(text: str) -> NetworkIndex:
    index = parse_list(text.encode(), "dc.csv", name="dc", today=TODAY)
    assert isinstance(index, NetworkIndex)
    return index


FEED = """\
# data-centre, proxy and VPN ranges
entry,kind,provider,expires
119.29.0.0/16,idc,tencent,
119.29.7.0/24,proxy,tencent,
119.29.7.128/25,vpn,someone,
203.0.113.7,proxy,ops,
240e:3b0::/32,idc,telecom,
240e:3b0:1:2::/64,proxy,telecom,
240e:3b0:1:2::9/128,vpn,ops,
2001:db8::/32,idc,old,2025-12-31
"""


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("119.29.1.1", "idc"),
        ("119.29.7.1", "proxy"),  # the /24 inside the /16
        ("119.29.7.200", "vpn"),  # the /25 inside that
        ("119.30.0.1", None),
        ("203.0.113.7", "proxy"),  # a single address
        ("203.0.113.8", None),
        ("::ffff:119.29.7.1", "proxy"),  # IPv4-mapped: the IPv4 address
        ("240e:3b0:9::1", "idc"),
        ("240e:3b0:1:2::1", "proxy"),  # /64 inside /32
        ("240e:3b0:1:2::9", "vpn"),  # /128 beats every prefix up to /64
        ("240e:3b0:1:3::9", "idc"),
        ("2001:db8::1", None),  # the row expired
        ("", None),
        ("not an address", None),
        ("+8613800138000", None),
    ],
)
def test_longest_prefix_wins(address: str, kind: str | None) -> None:
    index = _load(FEED)
    found = index.labels(address)
    assert (found["kind"] if found else None) == kind
    assert (address in index) is (kind is not None)


def test_what_the_index_says_about_itself() -> None:
    index = _load(FEED)
    assert index.kind == NETWORKS
    assert kind_of(index) == NETWORKS
    assert index.label_columns == ("kind", "provider", "expires")
    assert (len(index), index.stats.skipped_expired) == (7, 1)
    assert index.next_expiry is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.2.3.4/24", "host bits set (the network is 1.2.3.0/24)"),
        ("1.2.3.0/33", "/33 is longer than an IPv4 address"),
        ("1.2.3.0/x", "prefix length 'x' is not a number"),
        ("1.2.3.256", "'1.2.3.256' is not an IP address"),
        ("01.2.3.4", "'01.2.3.4' is not an IP address"),
        ("2001:db8::1/32", "host bits set (the network is 2001:db8::/32)"),
        ("2001:db8::g/32", "'2001:db8::g' is not an IP address"),
        ("fe80::1%eth0", "'fe80::1%eth0' is not an IP address"),
        ("::ffff:1.2.3.0/120", "'::ffff:1.2.3.0' is not an IP address"),
    ],
)
def test_bad_networks_are_errors(text: str, message: str) -> None:
    with pytest.raises(NetworkError, match="bad network: " + re.escape(message)):
        parse_network(text)
    with pytest.raises(ListLoadError) as err:
        parse_list(f"entry,kind\n{text},idc\n".encode(), "dc.csv", name="dc", today=TODAY)
    assert str(err.value) == f"dc.csv:2: bad network: {message}"


@pytest.mark.parametrize(
    ("text", "network"),
    [("1.2.3.4", True), ("1.2.3.0/24", True), ("::1", True), ("170.1234.5678", False),
     ("+8613800138000", False), ("138-0013-8000", False)],
)  # fmt: skip
def test_what_reads_as_a_network(text: str, network: bool) -> None:
    assert looks_like_network(text) is network


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "+8613800138000,a\n1.2.3.0/24,b\n",
            "dc.csv:3: a list holds phone numbers or IP networks, not both: this one holds"
            " phone numbers (line 2); put the others in a list of their own",
        ),
        (
            "1.2.3.0/24,b\n+8613800138000,a\n",
            "dc.csv:3: a list holds phone numbers or IP networks, not both: this one holds"
            " IP networks (line 2); put the others in a list of their own",
        ),
        (
            "1.2.3.0/24,b\n170123*,a\n",
            "dc.csv:3: a list holds phone numbers or IP networks, not both: this one holds"
            " IP networks (line 2); put the others in a list of their own",
        ),
    ],
)
def test_one_kind_per_list(rows: str, message: str) -> None:
    with pytest.raises(ListLoadError) as err:
        parse_list(f"entry,kind\n{rows}".encode(), "dc.csv", name="dc", today=TODAY)
    assert str(err.value) == message


def test_a_repeated_network_is_an_update() -> None:
    index = _load("entry,kind\n1.2.3.0/24,idc\n1.2.3.0/24,proxy\n")
    assert index.labels("1.2.3.4") == {"kind": "proxy"}
    assert (len(index), index.stats.duplicates) == (1, 1)


def test_a_header_alone_is_an_empty_list_of_numbers(tmp_path: Path) -> None:
    path = tmp_path / "dc.csv"
    path.write_text("entry,kind\n", encoding="utf-8")
    index = load_list(path, name="dc", today=TODAY)
    assert isinstance(index, ListIndex)
    assert kind_of(index) == NUMBERS


_NETS = st.one_of(
    st.tuples(st.just(4), st.integers(0, 2**32 - 1), st.integers(8, 32)),
    st.tuples(st.just(6), st.integers(0, 2**128 - 1), st.integers(16, 128)),
)


@settings(max_examples=60, deadline=None)
@given(
    nets=st.lists(st.tuples(_NETS, st.integers(0, 3)), min_size=1, max_size=25),
    probes=st.lists(st.integers(0, 2**32 - 1), max_size=20),
)
def test_lookups_match_brute_force(
    nets: list[tuple[tuple[int, int, int], int]], probes: list[int]
) -> None:
    """Random overlapping networks of both families; probes inside and around them."""
    rows: dict[str, int] = {}
    networks = []
    for (version, value, bits), label in nets:
        kind = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
        net = kind((value, bits), strict=False)
        rows[str(net)] = label  # a repeat: the later line wins
        networks.append(net)
    text = "entry,label\n" + "".join(f"{n},{label}\n" for n, label in rows.items())
    index = _load(text)
    addresses = [ipaddress.IPv4Address(p) for p in probes]
    for net in networks:
        addresses += [net.network_address, net.broadcast_address]
        if net.num_addresses > 2:
            addresses.append(net.network_address + 1)
    parsed = {ipaddress.ip_network(n): label for n, label in rows.items()}
    for probe in addresses:
        addr = probe
        # An IPv4-mapped address (::ffff:a.b.c.d, the end of ::/80) is its IPv4 address
        # (docs/lists.md): only IPv4 networks hold it.
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        holding = [n for n in parsed if n.version == addr.version and addr in n]
        want = str(parsed[max(holding, key=lambda n: n.prefixlen)]) if holding else None
        got = index.labels(str(probe))
        assert (got["label"] if got else None) == want, str(probe)
