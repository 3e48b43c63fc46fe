"""``ringfence health``: ask a server's gRPC health service (exit 0 when SERVING)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_health(ns: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if ns.tls_ca or ns.tls_cert:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(ns.tls_ca).read_bytes() if ns.tls_ca else None,
            private_key=Path(ns.tls_key).read_bytes() if ns.tls_key else None,
            certificate_chain=Path(ns.tls_cert).read_bytes() if ns.tls_cert else None,
        )
        channel = grpc.secure_channel(ns.address, creds)
    else:
        channel = grpc.insecure_channel(ns.address)
    with channel:
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
