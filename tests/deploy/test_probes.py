"""The chart's probes, run against a real server the way the kubelet runs them, in both
modes (plain gRPC and TLS): start-up and liveness succeed whenever the process answers,
policy or not, so a pod waiting for its first policy (or serving no tenant after a push
removed them all) is left not ready instead of being restarted into CrashLoopBackOff;
readiness succeeds only once a policy is served."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from certs import make_pki
from deploy.deploy_support import manifests, one, render
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import Running, running_server

POLICY = 'rule invalid {\n  when not phone.valid\n  then review\n  reason "x"\n}\n'


def rendered_probes(tls: bool) -> dict[str, dict[str, Any]]:
    values: dict[str, Any] = {"rules": {"demo": {"policy.rf": POLICY}}}
    if tls:
        values["tls"] = {"enabled": True, "secretName": "ringfence-tls"}
    deployment = one(manifests(render(values)), "Deployment")
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    return {kind: c[f"{kind}Probe"] for kind in ("startup", "liveness", "readiness")}


async def run_probe(probe: dict[str, Any], s: Running) -> bool:
    """One probe as the kubelet runs it: HTTP 200-399, or gRPC health SERVING."""
    if "httpGet" in probe:
        assert probe["httpGet"]["port"] == "health"
        url = f"http://127.0.0.1:{s.server.health_port}{probe['httpGet']['path']}"

        def get() -> int:
            try:
                with urllib.request.urlopen(url, timeout=probe["timeoutSeconds"]) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        return 200 <= await asyncio.to_thread(get) < 400
    check = probe["grpc"]
    assert check["port"] == 50051  # the chart's gRPC port: here, the server's own
    # The kubelet's gRPC probe is plaintext only, which is why TLS mode never uses it.
    async with grpc.aio.insecure_channel(s.address) as channel:
        try:
            resp = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=check["service"]),
                timeout=probe["timeoutSeconds"],
            )
        except grpc.aio.AioRpcError:
            return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_probes_on_a_server_without_then_with_a_policy(tls: bool, tmp_path: Path) -> None:
    probes = rendered_probes(tls)
    if tls:
        assert all("httpGet" in p for p in probes.values())
    rules = tmp_path / "rules"
    rules.mkdir()  # no tenant yet: what a push that removed every tenant leaves
    settings: dict[str, Any] = {"health_listen": "127.0.0.1:0"}
    if tls:
        pki = make_pki(tmp_path)
        settings.update(tls_cert=pki.server_cert, tls_key=pki.server_key)
    async with running_server(rules, **settings) as s:
        assert await run_probe(probes["startup"], s)
        assert await run_probe(probes["liveness"], s)
        assert not await run_probe(probes["readiness"], s)
        (rules / "demo").mkdir()
        (rules / "demo" / "policy.rf").write_text(POLICY)
        await s.server.reload()
        assert await run_probe(probes["readiness"], s)
        assert await run_probe(probes["liveness"], s)
        # Every tenant removed again: not ready, and still alive.
        (rules / "demo" / "policy.rf").unlink()
        (rules / "demo").rmdir()
        await s.server.reload()
        assert not await run_probe(probes["readiness"], s)
        assert await run_probe(probes["liveness"], s)
