"""What a Prometheus scrape of a running server gets, checked the way an SRE would: with
``promtool check metrics`` (Prometheus's own linter: counters with ``_total``, HELP on
every family, no bad names), and for the series the dashboards and alerts rely on
(process metrics, latency of every answer by status code, state errors per backend,
reloads counted only when something changed)."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from support import (
    Running,
    read_json_line,
    request,
    running_server,
    server_process,
    wait_serving,
)

from server.api import decision_pb2 as pb


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: install prometheus (make test does)")
    return found


async def scrape(s: Running) -> str:
    url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    return body.decode()  # type: ignore[no-any-return]


def value(text: str, name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (exactly one must match)."""
    found = []
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[1] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m[2]))
    assert len(found) == 1, (name, labels, found)
    return found[0]


async def traffic(s: Running) -> None:
    for _ in range(3):
        await s.decisions.Evaluate(request("+8613800138000"), timeout=5)
    for bad in (request("not a number"), request("+8613800138000", tenant="nobody")):
        with pytest.raises(grpc.aio.AioRpcError):
            await s.decisions.Evaluate(bad, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):  # fail-closed tenant whose Redis is down
        await s.decisions.Evaluate(request("+8613800138000", tenant="flaky"), timeout=5)
    await s.decisions.EvaluateBatch(
        pb.EvaluateBatchRequest(requests=[request("+8613800138001"), request("x")]), timeout=5
    )


@pytest.fixture
def rules(rules_copy: Path) -> Path:
    shutil.copytree(rules_copy / "demo", rules_copy / "flaky")
    # Its own Redis, which is down (nothing listens on port 1), and it fails closed.
    (rules_copy / "flaky" / "tenant.toml").write_text(
        'fail_mode = "closed"\nstate = "redis://:secret-pw@127.0.0.1:1/0"\n'
    )
    return rules_copy


async def test_promtool_finds_nothing_to_fix(rules: Path, tmp_path: Path) -> None:
    async with running_server(
        rules, metrics_listen="127.0.0.1:0", decision_log=str(tmp_path / "d.jsonl")
    ) as s:
        await traffic(s)
        text = await scrape(s)
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout
    assert result.stderr.strip() == "", result.stderr
    # Counters are typed as counters.
    for family in (
        "ringfence_phone_cache_hits",
        "ringfence_state_calls",
        "ringfence_state_errors",
        "ringfence_policy_compiles",
        "ringfence_decisions",
        "process_cpu_seconds",
    ):
        assert re.search(rf"^# TYPE {family}_total counter$", text, re.M) or re.search(
            rf"^# TYPE {family} counter$", text, re.M
        ), family
    assert "secret-pw" not in text


async def test_process_and_every_answer_and_each_backend(rules: Path) -> None:
    async with running_server(rules, metrics_listen="127.0.0.1:0") as s:
        await traffic(s)
        text = await scrape(s)
    assert value(text, "process_resident_memory_bytes") > 10 << 20
    assert value(text, "process_cpu_seconds_total") > 0
    assert value(text, "process_start_time_seconds") > 1.7e9
    # The compiler's fork server and worker(s) that built the policies.
    assert value(text, "ringfence_child_processes") >= 1
    assert value(text, "ringfence_child_processes_resident_memory_bytes") > 1 << 20
    # Every answer is in the latency histogram, by code.
    count = "ringfence_decision_duration_seconds_count"
    assert value(text, count, tenant="demo", code="OK") == 4
    assert value(text, count, tenant="demo", code="INVALID_ARGUMENT") == 2
    assert value(text, count, tenant="_unknown", code="NOT_FOUND") == 1
    assert value(text, count, tenant="flaky", code="UNAVAILABLE") == 1
    # The tenant's own (failing) Redis has its own series; the default backend is fine.
    flaky = "redis://127.0.0.1:1/0"
    assert value(text, "ringfence_state_errors_total", backend=flaky) >= 1
    assert value(text, "ringfence_state_errors_total", backend="default") == 0
    assert value(text, "ringfence_state_calls_total", backend="default") >= 4


async def test_a_reload_that_changes_nothing_is_not_counted(rules: Path) -> None:
    async with running_server(rules, metrics_listen="127.0.0.1:0") as s:
        first = await scrape(s)
        loaded = value(first, "ringfence_policy_reloads_total", tenant="demo", result="ok")
        flaky = value(first, "ringfence_policy_reloads_total", tenant="flaky", result="ok")
        await s.server.reload()  # what SIGHUP does; no file changed
        await s.server.reload()
        (rules / "demo" / "extra.rf").write_text(
            'rule extra {\n  when phone.valid == false\n  then review\n  reason "x"\n}\n'
        )
        await s.server.reload()
        text = await scrape(s)
    assert value(text, "ringfence_policy_reloads_total", tenant="demo", result="ok") == loaded + 1
    assert value(text, "ringfence_policy_reloads_total", tenant="flaky", result="ok") == flaky


def test_sighup_without_a_change_logs_no_reload(rules_copy: Path) -> None:
    with server_process(rules_copy, "--watch", "false") as srv:
        wait_serving(srv.address)
        srv.proc.send_signal(signal.SIGHUP)  # nothing changed
        (rules_copy / "demo" / "extra.rf").write_text(
            'rule extra {\n  when phone.valid == false\n  then review\n  reason "x"\n}\n'
        )
        srv.proc.send_signal(signal.SIGHUP)  # the change: its "policy loaded" is the marker
        lines = list(srv.lines)
        while sum(1 for line in lines if line.get("msg") == "policy loaded") < 2:
            line = read_json_line(srv.proc, time.monotonic() + 60)
            assert line is not None, lines
            lines.append(line)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0
        assert srv.proc.stderr is not None
        rest = srv.proc.stderr.read().decode()
    # Once at start, once for the change; the SIGHUP that found nothing new said nothing.
    assert "policy loaded" not in rest
