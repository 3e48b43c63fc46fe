"""What several subcommands share: a tenant registry over a rules folder, a channel to a
running server."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

    from server.bundle.registry import TenantRegistry


def registry(rules: Path, segments: str | None = None) -> TenantRegistry:
    """Builds go through compiler worker processes with the server's budget (the
    ``RINGFENCE_COMPILE_*`` variables), so a hostile policy fails here as it would there."""
    from server.bundle.registry import TenantRegistry
    from server.bundle.worker import CompilePool
    from server.config import ConfigError, compile_budget_from_env
    from server.phone import PhoneParser, SegmentTable

    try:
        budget = compile_budget_from_env()
    except ConfigError as exc:
        raise SystemExit(f"ringfence: {exc}") from None
    return TenantRegistry(
        rules, PhoneParser(SegmentTable.load(segments or None)), compiler=CompilePool(budget)
    )


def tenants(reg: TenantRegistry, only: str | None) -> list[str]:
    names = reg.discover()
    if only:
        if only not in names:
            raise SystemExit(f"ringfence: no tenant folder {only!r} in {reg.root}")
        return [only]
    return names


def channel(address: str, ns: argparse.Namespace) -> grpc.Channel:
    """A channel to a running server: TLS when ``--tls-ca`` or ``--tls-cert`` is given."""
    import grpc

    if ns.tls_ca or ns.tls_cert:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(ns.tls_ca).read_bytes() if ns.tls_ca else None,
            private_key=Path(ns.tls_key).read_bytes() if ns.tls_key else None,
            certificate_chain=Path(ns.tls_cert).read_bytes() if ns.tls_cert else None,
        )
        return grpc.secure_channel(address, creds)
    return grpc.insecure_channel(address)
