"""What IP facts add to an Evaluate, against the same decision without them, same run.

    .venv/bin/python bench/ip_facts.py [--networks 20000] [--events 50000] [--rounds 7]

Builds a City and an ASN database in the GeoLite2 layouts (every name in GeoLite2's eight
languages, which is what a lookup decodes) with mmdb-writer, then decides a stream of
events in process, as the server's request path does after parsing (facts, plan, evaluate
through ``dsl.pipeline.Step``, values given):

- baseline: the demo policy (its location rule compares phone.province with ip.province),
  each event's IP facts already known (looked up before the clock starts), so the
  decision does all the work the facts cause (the rule firing, its reason) but no lookup;
- with lookups: the same, the facts looked up in both databases at decision time, as the
  server does (``IpLocator.facts``), its memory of answers emptied before each round.

The difference is what the two lookups add per Evaluate. For scale, also the demo policy
without the location rule (reads no ip.*: the server never looks the address up for it).

The traffic is a day's shape: most addresses come back (NAT, retries, one household's
devices) or share a /24 with an earlier one; ``--cold`` share of them are new networks.
Also printed: a cold lookup (a new network every time: both databases decode), a warm
one (an address seen before), and the C reader's own ``get()`` on both databases, the
floor any caching is measured against. Target: under 3 µs added per Evaluate.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from ipdb_support import Place, write_asn_db, write_city_db  # noqa: E402

from dsl import compile_policy  # noqa: E402
from dsl.facts import NO_IP, EventFacts, Facts  # noqa: E402
from dsl.pipeline import Step  # noqa: E402
from server.geo.ipdb import IpLocator  # noqa: E402
from server.phone import PhoneParser  # noqa: E402

CITIES = [
    Place("CN", region="JS", region_en="Jiangsu", region_zh="江苏省", city_en="Changzhou",
          city_zh="常州"),
    Place("CN", region="BJ", region_en="Beijing", region_zh="北京市", city_en="Beijing",
          city_zh="北京"),
    Place("CN", region="GD", region_en="Guangdong", region_zh="广东省", city_en="Shenzhen",
          city_zh="深圳"),
    Place("CN", region="ZJ", region_en="Zhejiang", region_zh="浙江省", city_en="Hangzhou",
          city_zh="杭州"),
]  # fmt: skip


def _v4(value: int) -> str:
    return ".".join(str(value >> s & 255) for s in (24, 16, 8, 0))


def build(directory: Path, networks: int, rng: random.Random) -> tuple[Path, Path, list[int]]:
    """Two databases over ``networks`` random /20../24 IPv4 networks; their bases."""
    bases: dict[int, int] = {}
    while len(bases) < networks:
        bits = rng.choice((20, 22, 24, 24))
        bases[rng.randrange(1 << 32) >> (32 - bits) << (32 - bits)] = bits
    city = {f"{_v4(b)}/{bits}": rng.choice(CITIES) for b, bits in bases.items()}
    asn = {
        f"{_v4(b)}/{bits}": (4134 + i % 50, f"AS ORG {i % 50}")
        for i, (b, bits) in enumerate(bases.items())
    }
    started = time.perf_counter()
    paths = write_city_db(directory / "city.mmdb", city), write_asn_db(directory / "asn.mmdb", asn)
    print(
        f"databases: {networks:,} networks each, written in {time.perf_counter() - started:.0f} s"
    )
    return paths[0], paths[1], list(bases)


def traffic(bases: list[int], events: int, cold: float, rng: random.Random) -> list[str]:
    """Addresses in arrival order: repeats and neighbours of earlier ones, and new ones."""
    out: list[str] = []
    for _ in range(events):
        if out and rng.random() > cold:
            earlier = out[rng.randrange(max(0, len(out) - 5_000), len(out))]
            if rng.random() < 0.5:
                out.append(earlier)  # the same address again
            else:
                head = earlier.rsplit(".", 1)[0]
                out.append(f"{head}.{rng.randrange(1, 255)}")  # its /24 neighbour
        else:
            out.append(_v4(rng.choice(bases) | rng.randrange(1, 255)))
    return out


def per_event_us(fn: Callable[[], None], events: int, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) / events * 1e6)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cold", type=float, default=0.2, help="share of events from new networks")
    args = ap.parse_args()
    rng = random.Random(24)
    source = (REPO / "rules" / "demo" / "policy.rf").read_text(encoding="utf-8")
    library = {
        f"_shared/{p.name}": p.read_text(encoding="utf-8")
        for p in (REPO / "rules" / "_shared").glob("*.rf")
    }
    with_ip = compile_policy({"demo/policy.rf": source}, library=library, tenant="demo")
    start = source.index("rule registered_away_from_home")
    end = source.index("\nrule ", start + 1)
    without = compile_policy(
        {"demo/policy.rf": source[:start] + source[end + 1 :]}, library=library, tenant="demo"
    )
    assert with_ip.reads_ip
    assert not without.reads_ip
    parser = PhoneParser()
    phones = [parser.parse(f"+86139{rng.randrange(10**8):08d}") for _ in range(1_000)]
    values = {i: 1 for i in with_ip.aggregate_ids}

    with tempfile.TemporaryDirectory() as tmp:
        city, asn, bases = build(Path(tmp), args.networks, rng)
        locator = IpLocator.open([city, asn])
        addresses = traffic(bases, args.events, args.cold, rng)
        events = [
            (phones[i % len(phones)], EventFacts(scene="register", ip=a, occurred_at=1.8e9))
            for i, a in enumerate(addresses)
        ]

        known = [locator.facts(event.ip) for _, event in events]
        located = [(p, e, ip) for (p, e), ip in zip(events, known, strict=True)]

        def baseline() -> None:
            for phone, event, ip in located:
                Step(with_ip, {}, Facts("demo", phone, event, ip)).finish(values)

        def with_lookups() -> None:
            # A fresh memory per round: every round pays the cold share again.
            locator.forget()
            for phone, event in events:
                facts = Facts("demo", phone, event, locator.facts(event.ip))
                Step(with_ip, {}, facts).finish(values)

        def no_ip() -> None:
            for phone, event in events:
                Step(without, {}, Facts("demo", phone, event, NO_IP)).finish(values)

        before = locator.lookups
        base_t, with_t, plain_t = [], [], []
        for _ in range(args.rounds):  # alternate, so drift hits all three
            base_t += per_event_us(baseline, len(events), 1)
            with_t += per_event_us(with_lookups, len(events), 1)
            plain_t += per_event_us(no_ip, len(events), 1)
        b, w = statistics.median(base_t), statistics.median(with_t)
        print(
            f"evaluate  : facts known {b:6.2f} µs   looked up {w:6.2f} µs   the lookups add "
            f"{w - b:5.2f} µs per Evaluate ({w / b:4.2f}x)   target < 3 µs   (a policy "
            f"reading no ip.*: {statistics.median(plain_t):6.2f} µs)"
        )
        print(
            f"traffic   : {len(events):,} events, {len(set(addresses)):,} addresses, "
            f"{(locator.lookups - before) / 2 / args.rounds:,.0f} lookups of both databases"
            " a round "
            f"({args.cold:.0%} of events from new networks)"
        )

        cold_addresses = [_v4(b | rng.randrange(1, 255)) for b in bases[:10_000]]

        def cold() -> None:
            locator.forget()
            for a in cold_addresses:
                locator.facts(a)

        def warm() -> None:
            for a in cold_addresses:
                locator.facts(a)

        readers = [db.reader for db in locator.databases]

        def raw() -> None:
            for a in cold_addresses:
                for r in readers:
                    r.get(a)

        n = len(cold_addresses)
        c = statistics.median(per_event_us(cold, n, args.rounds))
        warm()
        h = statistics.median(per_event_us(warm, n, args.rounds))
        r = statistics.median(per_event_us(raw, n, args.rounds))
        print(
            f"lookup    : cold {c:5.2f} µs (a new network: both databases decode)   warm "
            f"{h:5.2f} µs   the C reader's get() on both {r:5.2f} µs (cold {c / r:4.2f}x)"
        )
        locator.close()


if __name__ == "__main__":
    main()
