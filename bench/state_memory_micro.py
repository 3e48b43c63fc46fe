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

from bench.common import REPO, machine
from bench.traffic import generate
from dsl.aggregates import AggregateRef
from dsl.facts import EventFacts, Facts
from server.bundle.load import TenantBundle
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.state import MemoryBackend

DAY = datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()

Work = list[tuple[Sequence[AggregateRef], float]]


def _bundle() -> TenantBundle:
    registry = TenantRegistry(REPO / "rules", PhoneParser())
    outcome = registry.load_sync(["demo"])[0]
    if not outcome.ok:
        raise SystemExit(f"demo policy did not load: {outcome.error}")
    bundle = registry.get("demo")
    assert bundle is not None
    return bundle


def replay_mix(n: int, seed: int = 11) -> list[tuple[str, EventFacts]]:
    """The replay benchmark's day (bench/traffic.py): users register, then ask for codes."""
    out = []
    for e in generate(seed=seed, users=max(1, n // 3))[:n]:
        ev = e["event"]
        at = datetime.fromisoformat(ev["occurred_at"]).timestamp()
        facts = EventFacts(ev["scene"], ev["app_id"], ev["ip"], ev["device_id"], at)
        out.append((e["phone_number"], facts))
    return out


def echo_mix(n: int, seed: int = 7) -> list[tuple[str, EventFacts]]:
    """bench/echo_ratio.py's requests: a fresh number almost every call, spread over a day."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = rnd.random()
        if kind < 0.1:
            phone = f"+86170000000{rnd.randrange(20):02d}"  # on the privacy list
        elif kind < 0.2:
            phone = f"+8616512340{i % 100:03d}"  # consecutive
        else:
            phone = f"+861{rnd.choice('3589')}{rnd.randrange(10**9):09d}"
        at = DAY + i * 86_400 / n
        scene = rnd.choice(["register", "login", "sms_code"])
        out.append((phone, EventFacts(scene, rnd.choice(["shop", "ride", "pay"]), "203.0.113.7",
                                      "", at)))  # fmt: skip
    return out


def workload(mix: list[tuple[str, EventFacts]]) -> Work:
    """Refs exactly as the server plans them, with the event times to apply them at."""
    bundle = _bundle()
    parser = PhoneParser()
    work: Work = []
    for phone, event in mix:
        facts = Facts(tenant="demo", phone=parser.parse(phone, "CN"), event=event)
        work.append((bundle.policy.plan(facts, bundle.lists), event.occurred_at))
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


def report(mix: str, work: Work, rounds: int) -> None:
    n = len(work)
    rows = [
        ("dict get+set per ref (baseline)", best(rounds, lambda: time_dict(work))),
        ("blake2b per ref", best(rounds, lambda: time_blake2b(work))),
        ("memory apply record", best(rounds, lambda: asyncio.run(time_apply(work, True)))),
        ("memory apply dry_run", best(rounds, lambda: asyncio.run(time_apply(work, False)))),
    ]
    base = rows[0][1]
    per_apply = sum(len(refs) for refs, _ in work) / n
    for name, seconds in rows:
        print(f"{mix:7} {name:34} {seconds / n * 1e6:9.2f} {seconds / base:7.1f}")
    print(f"{mix:7} ({n} applies, {per_apply:.1f} refs each; target: record <= 10 µs)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one record round")
    ns = ap.parse_args()
    mixes = {"replay": replay_mix, "echo": echo_mix}
    if ns.profile:
        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(time_apply(workload(replay_mix(ns.events)), True))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0

    print(f"# MemoryBackend.apply, demo policy ({machine()}), best of {ns.rounds} rounds")
    print(f"{'mix':7} {'what':34} {'µs/apply':>9} {'x dict':>7}")
    for mix, make in mixes.items():
        report(mix, workload(make(ns.events)), ns.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
