"""Realistic event streams for the demo policy: as a file for ``ringfence replay`` or as live
gRPC load.

    .venv/bin/python bench/traffic.py --out events.jsonl          # one simulated day
    .venv/bin/python bench/traffic.py --day 2026-03-01 --out d.jsonl   # that day, every time
    .venv/bin/python bench/traffic.py --grpc 127.0.0.1:50051      # the same day, live

Scenarios (each event carries a ``label`` that replay ignores and tests count by):

* ``normal`` — ordinary sign-ups over the day: random numbers in ordinary mobile
  segments, a registration then one or two SMS codes, some logins.
* ``privacy_platform`` — a code-receiving platform burning privacy (virtual middle)
  numbers: 150 list hits an hour for three hours, night-time, many apps.
* ``consecutive_batch`` — batch registration of 30 consecutive numbers from an MVNO
  segment within half an hour.
* ``trickle`` — privacy numbers at low volume through the day (a real user's spare
  number): must stay allowed, tagged.

All numbers are generated; none is a real subscriber's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
ORDINARY = ("134", "135", "136", "137", "138", "139", "150", "151", "186", "189")
APPS = ("shop", "ride", "pay", "video", "food")


def _event(
    label: str, phone: str, scene: str, at: datetime, app: str, rnd: random.Random
) -> dict[str, Any]:
    return {
        "label": label,
        "tenant": "demo",
        "phone_number": phone,
        "default_region": "CN",
        "event": {
            "scene": scene,
            "app_id": app,
            "ip": f"198.51.100.{rnd.randrange(1, 255)}",
            "device_id": f"dev-{rnd.randrange(10**9):09d}",
            "occurred_at": at.isoformat(),
        },
    }


def normal(day: datetime, rnd: random.Random, users: int) -> Iterator[dict[str, Any]]:
    for _ in range(users):
        phone = f"+86{rnd.choice(ORDINARY)}{rnd.randrange(10**8):08d}"
        at = day + timedelta(seconds=rnd.randrange(86_400 - 600))
        app = rnd.choice(APPS)
        yield _event("normal", phone, "register", at, app, rnd)
        for k in range(rnd.randint(1, 2)):
            yield _event("normal", phone, "sms_code", at + timedelta(seconds=30 + 60 * k), app, rnd)
        if rnd.random() < 0.3:
            yield _event("normal", phone, "login", at + timedelta(seconds=400), app, rnd)


def privacy_platform(day: datetime, rnd: random.Random) -> Iterator[dict[str, Any]]:
    # 01:00-04:00 local, 150 hits an hour, from the list's whole blocks.
    for hour in range(1, 4):
        for k in range(150):
            at = day + timedelta(hours=hour, seconds=k * 20 + rnd.randrange(20))
            phone = (
                f"+86170000001{rnd.randrange(100):02d}"
                if k % 2
                else f"+861651234{rnd.randrange(100):04d}"
            )
            yield _event(
                "privacy_platform",
                phone,
                rnd.choice(["sms_code", "register"]),
                at,
                rnd.choice(APPS),
                rnd,
            )


def consecutive_batch(day: datetime, rnd: random.Random) -> Iterator[dict[str, Any]]:
    # 171 is an MVNO segment; 30 consecutive numbers register between 14:00 and 14:30.
    base = 17112340000 + rnd.randrange(1000) * 100
    for k in range(30):
        at = day + timedelta(hours=14, seconds=k * 60 + rnd.randrange(30))
        yield _event("consecutive_batch", f"+86{base + k}", "register", at, "shop", rnd)


def code_farm(day: datetime, rnd: random.Random) -> Iterator[dict[str, Any]]:
    # Five numbers that only ever receive codes: a dozen each through the day, no login.
    for n in range(5):
        phone = f"+86{rnd.choice(ORDINARY)}{rnd.randrange(10**8):08d}"
        for k in range(12):
            at = day + timedelta(hours=9 + k, seconds=n * 60 + rnd.randrange(600))
            yield _event("code_farm", phone, "sms_code", at, rnd.choice(APPS), rnd)


def trickle(day: datetime, rnd: random.Random) -> Iterator[dict[str, Any]]:
    # One privacy-list hit an hour from 08:00 to 23:00, well away from the platform's hours.
    listed = [f"+861700000000{d}" for d in "12345"] + [f"+861700000001{d}" for d in "01234"]
    for hour in range(8, 24):
        at = day + timedelta(hours=hour, seconds=rnd.randrange(3000))
        yield _event(
            "trickle",
            rnd.choice(listed),
            rnd.choice(["login", "sms_code"]),
            at,
            rnd.choice(APPS),
            rnd,
        )


def generate(
    day: datetime | None = None, *, seed: int = 1, users: int = 2000
) -> list[dict[str, Any]]:
    """One simulated day (local midnight to midnight in Asia/Shanghai), in event order."""
    if day is None:
        day = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=1
        )
    rnd = random.Random(seed)
    events = [
        *normal(day, rnd, users),
        *privacy_platform(day, rnd),
        *consecutive_batch(day, rnd),
        *code_farm(day, rnd),
        *trickle(day, rnd),
    ]
    events.sort(key=lambda e: e["event"]["occurred_at"])
    return events


async def send(address: str, events: list[dict[str, Any]], concurrency: int) -> dict[str, int]:
    """Replay the day against a live server, in order, ``concurrency`` calls at a time."""
    import grpc
    from google.protobuf import json_format

    from server.api import decision_pb2 as pb
    from server.api import decision_pb2_grpc as pb_grpc

    counts: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        sem = asyncio.Semaphore(concurrency)

        async def one(e: dict[str, Any]) -> None:
            body = {k: v for k, v in e.items() if k != "label"}
            req = json_format.ParseDict(body, pb.EvaluateRequest())
            async with sem:
                resp = await stub.Evaluate(req, timeout=10)
            key = f"{e['label']}:{pb.Action.Name(resp.action).removeprefix('ACTION_').lower()}"
            counts[key] = counts.get(key, 0) + 1

        # Order matters for windows, so the day is sent in slices of `concurrency`.
        for i in range(0, len(events), concurrency):
            await asyncio.gather(*(one(e) for e in events[i : i + concurrency]))
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, help="write JSON lines here")
    ap.add_argument("--grpc", help="send to this server instead")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--day", type=date.fromisoformat, help="YYYY-MM-DD (default: yesterday, Asia/Shanghai)"
    )
    ap.add_argument("--concurrency", type=int, default=16)
    ns = ap.parse_args()
    day = datetime.combine(ns.day, time(), TZ) if ns.day else None
    events = generate(day, seed=ns.seed, users=ns.users)
    if ns.grpc:
        counts = asyncio.run(send(ns.grpc, events, ns.concurrency))
        print(json.dumps(counts, indent=2, sort_keys=True))
        return 0
    out = ns.out.open("w") if ns.out else sys.stdout
    for e in events:
        out.write(json.dumps(e, separators=(",", ":")) + "\n")
    if ns.out:
        out.close()
        print(f"{len(events)} events -> {ns.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
