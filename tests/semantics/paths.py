"""Every path that computes aggregates, each turned into one function from (tenant folders,
events) to the values the product answered for each event, and the comparison with the
model.

Live paths run a real server (tests/support.py ``running_server``) on its own event-loop
thread, so hypothesis examples can drive it synchronously; the server's receipt clock is a
:class:`Clock` the adapters set to each event's ``received_at`` before it is sent. Values
come from ``EvaluateResponse.aggregates`` (``explain``). Offline paths: ``ringfence
replay``, ``ringfence eval`` and rule tests (``ringfence test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import io
import json
import math
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from hypothesis import HealthCheck, Phase, settings
from ipdb_support import Place, write_city_db
from semantics.events import EPOCH, ticks
from semantics.model import ANY, IP_CITIES, Event, Outcome, Range
from support import RINGFENCE, running_server

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc
from server.api import policy_pb2, policy_pb2_grpc

GUARD_S = 60.0  # turns a hung call into a failure; never reached by a working server
# A generous state timeout: these tests are about values, and a stalled CI box must not
# turn a decision into a degraded one.
STATE_TIMEOUT_MS = 10_000.0
HASH_KEY = b"semantics-tests-hash-key-0123456"
# RINGFENCE_SEMANTICS_SCALE multiplies every example count (a deep run: 20).
SCALE = float(os.environ.get("RINGFENCE_SEMANTICS_SCALE", "1"))
# RINGFENCE_SEMANTICS_SHRINK=1 shrinks a failing example to a small one. Off by default:
# shrinking a stream through a live server can take minutes, and the failure message
# already names the first wrong value.
SHRINK = os.environ.get("RINGFENCE_SEMANTICS_SHRINK", "") not in ("", "0")

Values = Mapping[str, int | None]  # id -> value, None when the product said unknown


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What a path answered for one event."""

    code: grpc.StatusCode = grpc.StatusCode.OK
    values: Values = field(default_factory=dict)
    replayed: bool | None = None  # None: the path does not say
    response: pb.EvaluateResponse | None = None


class Clock:
    """The server's receipt clock (``RingfenceServer.clock``), set by the test."""

    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ServerThread:
    """A real server on a free 127.0.0.1 port, its event loop on a thread of its own, with a
    blocking gRPC channel for the test. A *restart* is :meth:`stop` and a new object on the
    same rules folder and state URL."""

    def __init__(self, rules: Path, clock: Clock, **overrides: Any) -> None:
        self.rules = rules
        self.clock = clock
        self._overrides = overrides
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(GUARD_S) or self.error is not None or not self.port:
            raise RuntimeError(f"the server did not start: {self.error!r}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.decisions = pb_grpc.DecisionServiceStub(self.channel)
        self.policies = policy_pb2_grpc.PolicyServiceStub(self.channel)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            async with running_server(self.rules, clock=self.clock, **self._overrides) as run:
                self.port = run.server.port
                self._ready.set()
                await self._stopping.wait()
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    def reload(self, tenants: Sequence[str]) -> None:
        """Re-read the rules folder now (PolicyService.ReloadPolicy); every tenant named
        must have loaded without an error."""
        resp = self.policies.ReloadPolicy(policy_pb2.ReloadPolicyRequest(), timeout=GUARD_S)
        status = {t.tenant: t for t in resp.tenants}
        for name in tenants:
            got = status.get(name)
            assert got is not None, f"no tenant {name} after a reload"
            assert got.version, (name, got)
            assert not got.last_error, (name, got)

    def stop(self) -> None:
        self.channel.close()
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(GUARD_S)


class Workspace:
    """A rules folder where each example installs its tenants under a fresh prefix, so one
    server serves many examples and no example sees another's state."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._next = 0

    def prefix(self) -> str:
        self._next += 1
        return f"x{self._next}-"

    def write(self, tenant: str, files: Mapping[str, str]) -> None:
        folder = self.root / tenant
        shutil.rmtree(folder, ignore_errors=True)
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")

    def clear(self) -> None:
        """Forget earlier examples' tenants (their folders; a reload then drops them)."""
        for folder in self.root.iterdir():
            shutil.rmtree(folder, ignore_errors=True)


def examples(n: int, **more: Any) -> settings:
    """Hypothesis settings for a test of ``n`` examples (scaled). No deadlines: CI is slow,
    and speed is not what these tests are about."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if SHRINK else [])
    return settings(
        max_examples=max(1, round(n * SCALE)),
        deadline=None,
        phases=phases,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
        **more,
    )


def ip_database(root: Path) -> Path:
    """The IP database every path is given (beside the rules folder ``root``): the
    model's IP_CITIES in the GeoLite2 City layout."""
    path = root.parent / "semantics-city.mmdb"
    if not path.exists():
        places = {net: Place("CN", region="JS", city_zh=city) for net, city in IP_CITIES.items()}
        write_city_db(path, places)
    return path


@dataclass
class Live:
    """A server (restartable) over a workspace, on one state URL."""

    server: ServerThread
    ws: Workspace
    state: str

    @classmethod
    def start(cls, root: Path, state: str) -> Live:
        ws = Workspace(root)
        return cls(ServerThread(root, Clock(), **cls.config(state, root)), ws, state)

    @staticmethod
    def config(state: str, root: Path) -> dict[str, Any]:
        # The hash key is shared, as replicas and restarts of one deployment share it.
        return {
            "state": state,
            "state_timeout_ms": STATE_TIMEOUT_MS,
            "hash_key": HASH_KEY,
            "ip_dbs": (ip_database(root),),
        }

    def restart(self) -> None:
        """A new server process, as far as state goes: a new server object on the same
        rules folder and state URL (memory state is that object's own)."""
        self.server.stop()
        config = self.config(self.state, self.ws.root)
        self.server = ServerThread(self.ws.root, self.server.clock, **config)


# Live paths ---------------------------------------------------------------------------


def timestamp(ev: Event) -> dict[str, int]:
    assert ev.occurred_at is not None
    seconds = math.floor(ev.occurred_at)
    return {"seconds": seconds, "nanos": round((ev.occurred_at - seconds) * 1e9)}


def to_request(ev: Event, prefix: str) -> pb.EvaluateRequest:
    event = pb.Event(
        scene=ev.scene,
        app_id=ev.app_id,
        ip=ev.ip,
        device_id=ev.device_id,
        attributes=dict(ev.attributes),
    )
    if ev.occurred_at is not None:
        event.occurred_at.seconds, event.occurred_at.nanos = timestamp(ev).values()
    return pb.EvaluateRequest(
        tenant=prefix + ev.tenant,
        phone_number=ev.phone.e164,
        event=event,
        request_id=ev.request_id,
        dry_run=ev.dry_run,
        explain=True,
    )


def answered(resp: pb.EvaluateResponse) -> Answer:
    values = {a.id: (a.value if a.known else None) for a in resp.aggregates}
    return Answer(values=values, replayed=resp.replayed, response=resp)


def status_code(code: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == code)


def unary(server: ServerThread, stream: Sequence[Event], prefix: str) -> list[Answer]:
    out = []
    for ev in stream:
        server.clock.now = ev.received_at
        try:
            out.append(answered(server.decisions.Evaluate(to_request(ev, prefix), timeout=GUARD_S)))
        except grpc.RpcError as exc:
            out.append(Answer(code=exc.code()))
    return out


def batch(server: ServerThread, stream: Sequence[Event], prefix: str) -> list[Answer]:
    """One EvaluateBatch per tick (events with one receipt time)."""
    out = []
    for tick in ticks(tuple(stream)):
        server.clock.now = tick[0].received_at
        req = pb.EvaluateBatchRequest(requests=[to_request(ev, prefix) for ev in tick])
        for result in server.decisions.EvaluateBatch(req, timeout=GUARD_S).results:
            if result.HasField("error"):
                out.append(Answer(code=status_code(result.error.code)))
            else:
                out.append(answered(result.response))
    return out


def stream(server: ServerThread, events: Sequence[Event], prefix: str) -> list[Answer]:
    """One EvaluateStream for the whole run; the clock moves only between ticks, once every
    answer of the tick is in."""
    requests: queue.Queue[pb.EvaluateRequest | None] = queue.Queue()

    def feed() -> Iterator[pb.EvaluateRequest]:
        while (item := requests.get()) is not None:
            yield item

    responses: Iterator[pb.EvaluateResponse] = iter(
        server.decisions.EvaluateStream(feed(), timeout=GUARD_S)
    )
    out = []
    try:
        for tick in ticks(tuple(events)):
            server.clock.now = tick[0].received_at
            for ev in tick:
                requests.put(to_request(ev, prefix))
            for _ in tick:
                resp = next(responses)
                if resp.HasField("error"):
                    out.append(Answer(code=status_code(resp.error.code)))
                else:
                    out.append(answered(resp))
    finally:
        requests.put(None)
        for _ in responses:
            pass
    return out


def install(server: ServerThread, ws: Workspace, files: Mapping[str, Mapping[str, str]]) -> str:
    """Write each tenant's folder under a fresh prefix and reload; returns the prefix."""
    ws.clear()
    prefix = ws.prefix()
    for tenant, tenant_files in files.items():
        ws.write(prefix + tenant, tenant_files)
    server.reload([prefix + t for t in files])
    return prefix


# Offline paths ------------------------------------------------------------------------


def replay_line(ev: Event, tenant: str, key: str) -> str:
    return json.dumps(
        {
            "tenant": tenant,
            "phone_number": ev.phone.e164,
            "request_id": key,
            "event": {
                "scene": ev.scene,
                "app_id": ev.app_id,
                "ip": ev.ip,
                "device_id": ev.device_id,
                "occurred_at": ev.occurred_at,
                "attributes": dict(ev.attributes),
            },
        }
    )


DECISIONS = ("--decisions",)


def replay_has_decisions() -> bool:
    done = subprocess.run(
        [str(RINGFENCE), "replay", "--help"], capture_output=True, text=True, check=False
    )
    return "--decisions" in done.stdout


def replay(root: Path, tenant: str, events: Sequence[Event], work: Path) -> list[Values]:
    """`ringfence replay` over ``events`` (each with ``occurred_at`` set): the values each
    event was decided with, in the order given. Through ``--decisions FILE`` when the CLI
    has it (JSON lines, one per event: its ``request_id``, ``key`` or input ``line``, and
    ``aggregates`` as ``[{id, value, known}]`` or ``{id: value}``), else through the
    replay module's Python API."""
    if not events:
        return []  # nothing to decide (and `ringfence replay` refuses a file without any)
    path = work / "events.jsonl"
    keys = [f"e{i}" for i in range(len(events))]
    lines = (replay_line(ev, tenant, k) + "\n" for ev, k in zip(events, keys, strict=True))
    path.write_text("".join(lines), encoding="utf-8")
    if replay_has_decisions():
        out = work / "decisions.jsonl"
        done = subprocess.run(
            [
                str(RINGFENCE),
                "replay",
                str(path),
                "--rules",
                str(root),
                "--tenant",
                tenant,
                "--ip-db",
                str(ip_database(root)),
                *DECISIONS,
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"replay exited {done.returncode}: {done.stderr[-2000:]}"
        by_key = {}
        for line in out.read_text().splitlines():
            d = json.loads(line)
            key = d.get("request_id") or d.get("key") or keys[int(d["line"]) - 1]
            by_key[str(key)] = _values(d["aggregates"])
        return [by_key[k] for k in keys]
    return _replay_api(root, tenant, path, keys)


def _values(raw: Any) -> Values:
    if isinstance(raw, dict):
        return dict(raw)
    return {a["id"]: (a.get("value", 0) if a.get("known", True) else None) for a in raw}


def _replay_api(root: Path, tenant: str, path: Path, keys: list[str]) -> list[Values]:
    """The values the replayer's memory state answered for each event (read by wrapping
    its backend: the CLI has no per-event output yet)."""
    from server.cli.common import registry
    from server.geo.ipdb import IpLocator
    from server.tools.replay import Replayer, read_events

    reg = registry(root)
    try:
        outcome = reg.load_sync([tenant])[0]
        assert outcome.ok, outcome.error
        bundle = reg.get(tenant)
        assert bundle is not None
        errors: list[str] = []
        events = read_events(path, reg.parser, tenant, errors, workers=0)
        assert not errors, errors
        replayer = Replayer(bundle, locate=IpLocator.open([ip_database(root)]).facts)
        seen: list[Values] = []
        apply_now = replayer.backend.apply_now

        def spy(*args: Any, **kwargs: Any) -> Any:
            values = apply_now(*args, **kwargs)
            seen.append(dict(values))
            return values

        replayer.backend.apply_now = spy  # type: ignore[method-assign]
        by_key: dict[str, Values] = {}
        for ev in events:
            seen.clear()
            replayer.decide_now(ev)
            by_key[ev.key] = seen[-1] if seen else {}
        return [by_key[k] for k in keys]
    finally:
        close = getattr(reg.compiler, "close", None)
        if close is not None:
            close()


def cli(*args: str) -> tuple[int, str]:
    """A `ringfence` subcommand run in this process (as the console script runs it)."""
    from server.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def eval_values(
    root: Path, tenant: str, ev: Event, decimals: frozenset[str] = frozenset()
) -> Values:
    """The aggregate values `ringfence eval` shows (and decides with) for one event; those
    of ``decimals`` are shown as decimals (``-3.25``) and read back as millionths."""
    assert ev.occurred_at is not None
    args = ["eval", "--rules", str(root), "--tenant", tenant, "--phone", ev.phone.e164]
    args += ["--ip-db", str(ip_database(root))]
    args += ["--scene", ev.scene, "--app-id", ev.app_id, "--ip", ev.ip]
    at = ev.occurred_at
    args += ["--device-id", ev.device_id, "--at", str(int(at)) if at == int(at) else repr(at)]
    for k, v in ev.attributes:
        args += ["--attr", f"{k}={v}"]
    code, text = cli(*args)
    assert code == 0, text
    values: dict[str, int | None] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("aggregates"):
            break
    for line in lines:
        if not line.startswith("  ") or " = " not in line:
            break
        name, _, rest = line.strip().partition(" = ")
        shown = rest.split()[0]
        name = name.strip()
        if shown == "unknown":
            values[name] = None
        elif name in decimals:
            values[name] = int(decimal.Decimal(shown) * 1_000_000)
        else:
            values[name] = int(shown.removesuffix("s"))
    return values


def _event_table(ev: Event) -> str:
    event = {
        "scene": ev.scene,
        "app_id": ev.app_id,
        "ip": ev.ip,
        "device_id": ev.device_id,
        "occurred_at": ev.occurred_at or 0,
    }
    fields = ", ".join(f"{k} = {json.dumps(v)}" for k, v in event.items())
    attrs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in ev.attributes)
    return f"{{ {fields}, attributes = {{ {attrs} }} }}"


def rule_test_case(
    ev: Event, name: str, expected_rules: Sequence[str], history: Sequence[Event] = ()
) -> str:
    """A `[[case]]` for `ringfence test` that expects exactly these rules to fire, after
    ``history`` (each with its own number and event time)."""
    rules = ", ".join(json.dumps(r) for r in sorted(expected_rules))
    past = ",\n".join(
        f"    {{ phone = {json.dumps(h.phone.e164)}, event = {_event_table(h)} }}" for h in history
    )
    return (
        f"[[case]]\nname = {json.dumps(name)}\nphone = {json.dumps(ev.phone.e164)}\n"
        f"event = {_event_table(ev)}\n"
        + (f"history = [\n{past},\n]\n" if history else "")
        + f'[case.expect]\naction = "{"review" if expected_rules else "allow"}"\n'
        f"rules = [{rules}]\n\n"
    )


def rule_tests(root: Path, tenant: str) -> tuple[bool, str]:
    """`ringfence test -v` for one tenant: (every case passed, the output)."""
    code, text = cli("test", str(root), "--tenant", tenant, "-v", "--ip-db", str(ip_database(root)))
    return code == 0, text


# Comparison ---------------------------------------------------------------------------


def describe(ev: Event) -> str:
    stamp = "" if ev.occurred_at is None else f" t=r{ev.occurred_at - ev.received_at:+.2f}s"
    flags = " dry_run" if ev.dry_run else ""
    rid = f" id={ev.request_id}" if ev.request_id else ""
    return (
        f"{ev.tenant} {ev.phone.e164} scene={ev.scene!r} app={ev.app_id!r} "
        f"dev={ev.device_id!r} ip={ev.ip!r} attrs={dict(ev.attributes)} "
        f"r=EPOCH+{ev.received_at - EPOCH:.2f}s{stamp}{rid}{flags}"
    )


def mismatches(
    events: Sequence[Event],
    model: Sequence[Outcome],
    product: Sequence[Answer],
    meaning: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """One line per value where the product is not what the model allows, first first;
    ``meaning[tenant][id]`` says what an id is (its declaration)."""
    assert len(model) == len(product) == len(events)
    out = []
    for i, (ev, want, got) in enumerate(zip(events, model, product, strict=True)):
        where = f"event {i} ({describe(ev)})"
        if want.refused or got.code is not grpc.StatusCode.OK:
            expected = "INVALID_ARGUMENT" if want.refused else "OK"
            if got.code.name != expected:
                out.append(f"{where}: status: model {expected}, product {got.code.name}")
            continue
        if got.replayed is not None and got.replayed != want.replayed:
            out.append(f"{where}: replayed: model {want.replayed}, product {got.replayed}")
        for agg_id, (lo, hi) in want.values.items():
            value = got.values.get(agg_id, "missing")
            if not allows((lo, hi), value):
                shown = (
                    "unknown"
                    if lo is None
                    else "anything"
                    if (lo, hi) == ANY
                    else str(lo)
                    if lo == hi
                    else f"{lo}..{hi}"
                )
                said = (meaning or {}).get(ev.tenant, {}).get(agg_id)
                what = f" [{said}]" if said else ""
                out.append(f"{where}: {agg_id}{what}: model {shown}, product {value}")
        for agg_id in sorted(set(got.values) - set(want.values)):
            out.append(f"{where}: {agg_id}: not in the model, product {got.values[agg_id]}")
    return out


def allows(want: Range, value: object) -> bool:
    """Whether the product's ``value`` is one the model's range allows."""
    lo, hi = want
    if want == ANY:
        return value is None or isinstance(value, int)
    if lo is None or hi is None:
        return value is None
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def report(title: str, found: list[str], policy_text: str = "") -> str:
    """A failure message: the first mismatch on the first line (BEFORE.txt keeps it)."""
    head = f"{title}: {found[0]}"
    more = "\n".join(found[1:20])
    rest = f"\n... and {len(found) - 20} more" if len(found) > 20 else ""
    return f"{head}\n{more}{rest}\n--- policy ---\n{policy_text}"
