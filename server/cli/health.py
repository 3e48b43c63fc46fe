"""``ringfence health``: ask a server's gRPC health service (exit 0 when SERVING), or, with
``--local``, the server of this container as its own settings (``RINGFENCE_*``) describe
it: what the image's HEALTHCHECK runs, so it follows a changed ``RINGFENCE_LISTEN`` and
works with TLS on."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

from server.cli.common import channel

_ANY = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def _local_address(listen: str) -> str:
    """Where to reach a server listening on ``listen`` from inside its container."""
    host, _, port = listen.rpartition(":")
    host = _ANY.get(host, host).strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_health(ns: argparse.Namespace) -> int:
    if ns.local:
        return _run_local(ns)
    return _run_grpc(ns, ns.address or "127.0.0.1:50051")


def _run_local(ns: argparse.Namespace) -> int:
    """Readiness (``/readyz``; ``--live``: ``/healthz``) from the plain-HTTP health
    endpoint, which answers the same with or without TLS on the gRPC port; without one,
    gRPC health on ``RINGFENCE_LISTEN`` (plaintext only)."""
    health = os.environ.get("RINGFENCE_HEALTH_LISTEN", "")
    if health:
        url = f"http://{_local_address(health)}/{'healthz' if ns.live else 'readyz'}"
        try:
            with urllib.request.urlopen(url, timeout=ns.timeout) as resp:
                body = resp.read().decode(errors="replace").strip()
                print(f"{url}: {resp.status} {body}")
                return 0
        except urllib.error.HTTPError as exc:
            print(f"{url}: {exc.code} {exc.read().decode(errors='replace').strip()}")
            return 1
        except OSError as exc:
            print(f"{url}: {exc}", file=sys.stderr)
            return 1
    if os.environ.get("RINGFENCE_TLS_CERT"):
        print(
            "ringfence health --local: the gRPC port speaks TLS; set RINGFENCE_HEALTH_LISTEN "
            "(the plain-HTTP health endpoint) for this check",
            file=sys.stderr,
        )
        return 1
    ns.service = "" if ns.live else ns.service or "ringfence.v1.DecisionService"
    return _run_grpc(ns, _local_address(os.environ.get("RINGFENCE_LISTEN", "127.0.0.1:50051")))


def _run_grpc(ns: argparse.Namespace, address: str) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with channel(address, ns) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=ns.service), timeout=ns.timeout
            )
        except grpc.RpcError as exc:
            print(f"{address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(f"{address} {ns.service or '(server)'}: {name}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1
