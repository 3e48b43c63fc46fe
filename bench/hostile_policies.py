"""Evaluate latency while hostile policies are validated and reloaded, against the same
server's steady latency, in one run.

    .venv/bin/python bench/hostile_policies.py [--seconds 5]

Hostile policies are the ones issue 11 found (a `const` chain of squares, sustained()
over a one-second window) and ones built to cost as much as the limits allow: a file at
the size limit, sustained() at its step limit in many rules, nesting at the depth limit,
sets at the size limit, thousands of errors, and the largest legal policy, which takes
longer than any sane budget to compile (the kill path). They are sent 20 at a time to
ValidatePolicy while a tenant folder is rewritten with them (hot reload), and the quiet
tenant's Evaluate p50/p99 is compared with the same measurement without them.

The tests (tests/security/) use the same sources.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsl import CompileOptions

LIMITS = CompileOptions()
FILE_LIMIT = LIMITS.max_source_bytes


def const_chain(lines: int = 24) -> str:
    """Issue 11, item 3: each constant the square of the one before, from a 20-digit one."""
    out = ["const C0 = 99999999999999999999"]
    out += [f"const C{i} = C{i - 1} * C{i - 1}" for i in range(1, lines)]
    out.append(f"rule r {{\n  when C{lines - 1} > 1\n  then block\n}}")
    return "\n".join(out) + "\n"


def sustained_one_second(rules: int = 4) -> str:
    """Issue 11, item 3: sustained() over a week of one-second windows."""
    out = ["aggregate a = count(per number, over 1s)"]
    out += [f"rule r{i} {{\n  when sustained(a > {i}, 7d)\n  then block\n}}" for i in range(rules)]
    return "\n".join(out) + "\n"


def sustained_at_limit(rules: int = 60) -> str:
    """sustained() at its step limit (a week of hours) in many rules: legal, and costly."""
    out = ["aggregate a = count(per number, over 1h)"]
    out += [f"rule r{i} {{\n  when sustained(a > {i}, 7d)\n  then block\n}}" for i in range(rules)]
    return "\n".join(out) + "\n"


def _fill(make: Callable[[int], str], limit: int = FILE_LIMIT - 1024) -> str:
    parts: list[str] = []
    size = 0
    i = 0
    while i < LIMITS.max_rules:
        part = make(i)
        if size + len(part) > limit:
            return "".join(parts)
        parts.append(part)
        size += len(part)
        i += 1
    return "".join(parts)


def largest_legal(rules: int = LIMITS.max_rules) -> str:
    """As many rules as a policy may have, each small: compiling it takes far longer than
    a time budget allows (measured: about a minute), so it exercises the kill path."""
    rule = (
        'rule r{i} {{ when phone.valid and event.scene == "a" and event.app_id != "b" '
        'then block reason "r{i}" }}\n'
    )
    return "".join(rule.format(i=i) for i in range(rules))


def max_size_file() -> str:
    """A file at the size limit, of rules with long conditions."""
    cond = " and ".join(f'event.attributes["k{j}"] != "v{j}"' for j in range(30))
    return _fill(lambda i: f"rule r{i} {{\n  when {cond}\n  then review\n}}\n")


def deep_nesting() -> str:
    """Parentheses as deep as the parser allows, in rule after rule, up to the size limit."""
    depth = LIMITS.max_depth - 8
    cond = "(" * depth + "phone.valid" + ")" * depth
    return _fill(lambda i: f"rule r{i} {{\n  when {cond}\n  then block\n}}\n")


def huge_sets() -> str:
    """Sets at their size limit, one per rule, up to the file size limit."""
    items = ", ".join(f'"{j}"' for j in range(LIMITS.max_set_items))
    return _fill(lambda i: f"rule r{i} {{\n  when event.app_id in {{{items}}}\n  then block\n}}\n")


def many_errors() -> str:
    """A file at the size limit in which every line is an error."""
    return _fill(lambda i: f"rule r{i} {{ when phone.vaild{i} then blok }}\n")


QUIET = "rule ok { when phone.valid then allow }\n"

HOSTILE: dict[str, Callable[[], str]] = {
    "const_chain": const_chain,
    "sustained_one_second": sustained_one_second,
    "sustained_at_limit": sustained_at_limit,
    "max_size_file": max_size_file,
    "deep_nesting": deep_nesting,
    "huge_sets": huge_sets,
    "many_errors": many_errors,
    "largest_legal": largest_legal,
}


# -- the benchmark ----------------------------------------------------------------------------


async def _hostile_traffic(
    address: str, rules: Path, seconds: float, parts: str = "both"
) -> dict[str, int]:
    """For ``seconds``: 20 ValidatePolicy calls at a time with hostile sources, and the
    `hostile` tenant's policy rewritten with each in turn (hot reload) every second."""
    import grpc

    from server.api import policy_pb2 as ppb
    from server.api import policy_pb2_grpc

    sources = _SOURCES or [make() for make in HOSTILE.values()]
    stop_at = time.monotonic() + seconds
    counts = {"validated": 0, "refused": 0, "rewrites": 0}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)

        async def validate(i: int) -> None:
            while time.monotonic() < stop_at:
                source = sources[i % len(sources)]
                try:
                    await stub.ValidatePolicy(
                        ppb.ValidatePolicyRequest(tenant="hostile", source=source), timeout=120
                    )
                    counts["validated"] += 1
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    counts["refused"] += 1
                    await asyncio.sleep(0.05)
                i += 1

        async def rewrite() -> None:
            i = 0
            while time.monotonic() < stop_at:
                target = rules / "hostile" / "policy.rf"
                tmp = target.with_name(".policy.rf.tmp")
                tmp.write_text(sources[i % len(sources)])
                os.replace(tmp, target)
                counts["rewrites"] += 1
                i += 1
                await asyncio.sleep(1.0)

        tasks = [rewrite()] if parts != "validate" else []
        if parts != "reload":
            tasks += [validate(k) for k in range(20)]
        await asyncio.gather(*tasks)
    return counts


# Made once in the parent before the hostile client forks, so the child spends no time
# generating them while latency is measured.
_SOURCES: list[str] = []


def _spin(seconds: float) -> None:
    """A busy loop at idle priority, as the compile workers run: the machine's own floor."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _spinners(seconds: float) -> dict[str, int]:
    """As many busy loops as the server has compile workers (which a hostile policy keeps
    busy): the same share of the machine, doing nothing the server sees."""
    from server.bundle.budget import default_workers

    procs = [
        multiprocessing.Process(target=_spin, args=(seconds,)) for _ in range(default_workers())
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return {"validated": 0, "refused": 0, "rewrites": 0}


def _hostile_process(
    address: str, rules: Path, seconds: float, parts: str, nice: int, out: Connection
) -> None:
    # A process of its own, as in isolation_latency.py: the hostile client competes for
    # the server, not for the event loop of the client that measures. On a real network it
    # would run on other machines; --hostile-nice shows what its share of this box's two
    # cores (serialising a megabyte per call) adds to the server's tail.
    if nice:
        os.nice(nice)
    if parts == "spin":
        out.send(_spinners(seconds))
        return
    out.send(asyncio.run(_hostile_traffic(address, rules, seconds, parts)))


def main() -> int:
    from bench.common import LoadResult, load, machine, ringfence_server, rules_copy
    from bench.echo_ratio import METHOD, requests

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--only",
        choices=("both", "validate", "reload", "spin"),
        default="both",
        help="hostile traffic; spin: no traffic, an idle-priority busy loop per compile worker "
        "instead (the floor: what any work beside the server costs its tail on this machine)",
    )
    ap.add_argument("--hostile-nice", type=int, default=0, help="niceness of the hostile client")
    # Below the largest legal policy's compile time, so the kill path is in the mix.
    ap.add_argument("--compile-timeout", default="5")
    ap.add_argument(
        "--sources",
        default=",".join(HOSTILE),
        help="comma-separated hostile sources to send (default: all of them)",
    )
    ns = ap.parse_args()
    reqs = requests()
    wanted = ns.sources.split(",")
    if unknown := sorted(set(wanted) - set(HOSTILE)):
        ap.error(f"unknown --sources {', '.join(unknown)}; known: {', '.join(HOSTILE)}")
    _SOURCES[:] = [HOSTILE[name]() for name in wanted]
    print(f"# Evaluate latency while hostile policies are validated and reloaded ({machine()})")
    with rules_copy() as rules:
        (rules / "hostile").mkdir()
        (rules / "hostile" / "policy.rf").write_text(QUIET)
        with ringfence_server(rules, "--compile-timeout", ns.compile_timeout) as port:
            address = f"127.0.0.1:{port}"

            def run() -> tuple[LoadResult, LoadResult, dict[str, int], float]:
                # Calm first: a good policy for the hostile tenant, and time for the last
                # round's compiles to finish or be killed.
                (rules / "hostile" / "policy.rf").write_text(QUIET)
                time.sleep(float(ns.compile_timeout) + 1.0)
                steady = asyncio.run(
                    load(address, METHOD, reqs, concurrency=2, duration_s=ns.seconds)
                )
                receive, send = multiprocessing.Pipe(duplex=False)
                t0 = time.perf_counter()
                hostile_client = multiprocessing.Process(
                    target=_hostile_process,
                    args=(address, rules, ns.seconds + 2.5, ns.only, ns.hostile_nice, send),
                )
                hostile_client.start()
                time.sleep(1.0)  # let the hostile load build up first
                hostile = asyncio.run(
                    load(address, METHOD, reqs, concurrency=2, duration_s=ns.seconds)
                )
                counts = receive.recv()
                hostile_client.join(180)
                return steady, hostile, counts, time.perf_counter() - t0

            for round_ in range(1, ns.rounds + 1):
                steady, hostile, counts, took = run()
                print(
                    f"round {round_}: steady p50 {steady.p50_ms:.2f} ms p99 {steady.p99_ms:.2f} ms"
                    f" ({steady.calls} calls, {steady.errors} errors); hostile p50 "
                    f"{hostile.p50_ms:.2f} ms p99 {hostile.p99_ms:.2f} ms ({hostile.calls} calls,"
                    f" {hostile.errors} errors); ratio p50 {hostile.p50_ms / steady.p50_ms:.2f}x"
                    f" p99 {hostile.p99_ms / steady.p99_ms:.2f}x (target p99 <= 2x)"
                )
                print(
                    f"  hostile traffic over {took:.1f} s: {counts['validated']} ValidatePolicy "
                    f"answered, {counts['refused']} refused (RESOURCE_EXHAUSTED), "
                    f"{counts['rewrites']} rewrites of the hostile tenant's policy"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
