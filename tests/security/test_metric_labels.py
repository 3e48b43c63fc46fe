"""Metric labels never take a caller's text (issue 11, item 13).

``ringfence_request_errors`` was labelled with whatever tenant string a request carried:
unauthenticated callers could fill the series cap and push real tenants' errors into the
overflow bucket. Now only tenants the server has are label values; every other name is
counted under one fixed value.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import grpc
import pytest
from support import request, running_server

from server.observability.telemetry import UNKNOWN_TENANT

SERIES = re.compile(r"^ringfence_request_errors_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)


def error_series(text: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for m in SERIES.finditer(text):
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m["labels"]))
        out[(labels["tenant"], labels["code"])] = float(m["value"])
    return out


async def test_unknown_tenants_share_one_label(rules_copy: Path) -> None:
    names = [f"tenant-{i}" for i in range(200)] + ["alpha\n", "x" * 500, "DEMO", "_unknown2"]
    async with running_server(rules_copy, metrics_listen="127.0.0.1:0") as s:
        for name in names:
            with pytest.raises(grpc.aio.AioRpcError):
                await s.decisions.Evaluate(request("+8613800138000", tenant=name), timeout=5)
        # A known tenant's error keeps its name.
        with pytest.raises(grpc.aio.AioRpcError):
            await s.decisions.Evaluate(request("not a number", tenant="demo"), timeout=5)
        url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    series = error_series(body.decode())
    assert {tenant for tenant, _ in series} == {UNKNOWN_TENANT, "demo"}
    unknown = sum(v for (tenant, _), v in series.items() if tenant == UNKNOWN_TENANT)
    assert unknown == len(names)
    assert series[("demo", "INVALID_ARGUMENT")] == 1
