"""``ringfence health``: ask a server's gRPC health service (exit 0 when SERVING)."""

from __future__ import annotations

import argparse
import sys

from server.cli.common import channel


def run_health(ns: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with channel(ns.address, ns):
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=ns.service), timeout=ns.timeout
            )
        except grpc.RpcError as exc:
            print(f"{ns.address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(f"{ns.address} {ns.service or '(server)'}: {name}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1
