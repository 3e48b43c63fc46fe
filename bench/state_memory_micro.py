"""MemoryBackend.apply per call for the demo policy's refs, against plain-dict baselines.

    .venv/bin/python bench/state_memory_micro.py [--events 30000] [--rounds 5] [--profile]

The refs are built exactly as the server builds them: the demo tenant is loaded from
``rules/`` and ``bundle.policy.plan(facts, bundle.lists)`` binds it to a mix of numbers
(ordinary sign-ups, privacy-list numbers, a consecutive batch; see ``bench/traffic.py`` and
``bench/echo_ratio.py``) with event times spread over one local day. Planning happens
outside the timed loop: only ``apply`` is measured. Each round uses a fresh backend, so the
store grows as it would in a replay of that day.

Baselines, measured in the same run and per apply-sized unit of work (one op per ref):
``dict get+set`` does a get and a set per ref on a dict of string keys; ``blake2b`` hashes
each ref's key with a keyed BLAKE2b, as the backend must at least do for hashed keys.
Target (issue 8): apply (record) <= 10 µs on the demo refs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import pstats
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, machine  # noqa: E402
from dsl.aggregates import AggregateRef  # noqa: E402
from dsl.facts import EventFacts, Facts  # noqa: E402
from server.phone import PhoneParser  # noqa: E402
from server.state import MemoryBackend  # noqa: E402
from server.tenants import TenantRegistry  # noqa: E402

DAY = datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
ORDINARY = ("134", "135", "136", "137", "138", "139", "150", "151", "186", "189")
APPS = ("shop", "ride", "pay", "video", "food")
SCENES = ("register", "sms_code", "sms_code", "login")

Work = list[tuple[Sequence[AggregateRef], float]]


def phones(n: int, rnd: random.Random) -> list[str]:
    out = []
    batch = 17112340000 + rnd.randrange(1000) * 100
    for i in range(n):
        kind = rnd.random()
        if kind < 0.1:  # privacy-list numbers (the list holds +86170000000xx)
            out.append(f"+86170000000{rnd.randrange(20):02d}")
        elif kind < 0.15:  # a batch of consecutive numbers from an MVNO segment
            out.append(f"+86{batch + i % 30}")
        else:
            out.append(f"+86{rnd.choice(ORDINARY)}{rnd.randrange(10**8):08d}")
    return out


def workload(n: int, seed: int = 7) -> Work:
    rnd = random.Random(seed)
    parser = PhoneParser()
    registry = TenantRegistry(REPO / "rules", parser)
    outcome = registry.load_sync(["demo"])[0]
    if not outcome.ok:
        raise SystemExit(f"demo policy did not load: {outcome.error}")
    bundle = registry.get("demo")
    assert bundle is not None
    work: Work = []
    step = 86_400 / n  # one day's traffic, in event-time order
    for i, raw in enumerate(phones(n, rnd)):
        at = DAY + i * step + rnd.random()
        event = EventFacts(
            scene=rnd.choice(SCENES),
            app_id=rnd.choice(APPS),
            ip=f"198.51.100.{rnd.randrange(1, 255)}",
            device_id=f"dev-{rnd.randrange(10**9):09d}",
            occurred_at=at,
        )
        facts = Facts(tenant="demo", phone=parser.parse(raw, "CN"), event=event)
        work.append((bundle.policy.plan(facts, bundle.lists), at))
    return work


async def time_apply(work: Work, record: bool) -> float:
    backend = MemoryBackend(hash_key=b"bench-hash-key", max_keys=1_000_000)
    apply = backend.apply
    t0 = time.perf_counter()
    for refs, at in work:
        await apply("demo", refs, at, record=record)
    return time.perf_counter() - t0


def time_dict(work: Work) -> float:
    store: dict[str, int] = {}
    keys = [[f"rf:{{demo}}:{r.spec.id}:{r.key}" for r in refs] for refs, _ in work]
    t0 = time.perf_counter()
    for ks in keys:
        for k in ks:
            store[k] = store.get(k, 0) + 1
    return time.perf_counter() - t0


def time_blake2b(work: Work) -> float:
    key = b"bench-hash-key"
    blake2b = hashlib.blake2b
    t0 = time.perf_counter()
    for refs, _ in work:
        for r in refs:
            blake2b(r.key.encode(), key=key, digest_size=16).hexdigest()
    return time.perf_counter() - t0


def best(rounds: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(rounds))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one record round")
    ns = ap.parse_args()
    work = workload(ns.events)
    n = len(work)
    per_apply = sum(len(refs) for refs, _ in work) / n
    if ns.profile:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(time_apply(work, True))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0

    rows = [
        ("dict get+set per ref (baseline)", best(ns.rounds, lambda: time_dict(work))),
        ("blake2b per ref (baseline)", best(ns.rounds, lambda: time_blake2b(work))),
        ("memory apply record", best(ns.rounds, lambda: asyncio.run(time_apply(work, True)))),
        ("memory apply dry_run", best(ns.rounds, lambda: asyncio.run(time_apply(work, False)))),
    ]
    base = rows[0][1]
    print(f"# MemoryBackend.apply, demo policy ({machine()})")
    print(f"{n} applies, {per_apply:.1f} refs per apply, best of {ns.rounds} rounds")
    print(f"{'what':34} {'µs/apply':>9} {'x dict':>7}")
    for name, seconds in rows:
        print(f"{name:34} {seconds / n * 1e6:9.2f} {seconds / base:7.1f}")
    print(f"target: memory apply record <= 10 µs ({rows[2][1] / n * 1e6:.2f} µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
