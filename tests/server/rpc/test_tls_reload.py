"""The serving certificate follows its files (a cert-manager renewal swaps a mounted Secret):
new connections get the new certificate, without a restart and without dropping calls."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import grpc
import pytest
from certs import Pki, make_pki
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import Running, running_server

SERVING = health_pb2.HealthCheckResponse.SERVING


def mount(root: Path, generation: int, pki: Pki, *, key: Path | None = None) -> None:
    """What the kubelet does with a Secret volume: files in a timestamped folder, reached
    through ``..data``, which is swapped atomically; the old folder is then deleted."""
    new = root / f"..2026_11_30_{generation:02d}"
    new.mkdir()
    shutil.copy(pki.server_cert, new / "tls.crt")
    shutil.copy(key or pki.server_key, new / "tls.key")
    shutil.copy(pki.ca, new / "ca.crt")
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.symlink(new.name, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")
    for name in ("tls.crt", "tls.key", "ca.crt"):
        if not (root / name).is_symlink():
            os.symlink(f"..data/{name}", root / name)
    if old is not None:
        shutil.rmtree(root / old)


def trusting(ca: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())


def presenting(pki: Pki) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )


async def check(address: str, trusted_ca: Path) -> grpc.StatusCode:
    """A fresh connection that trusts only ``trusted_ca``: OK or why not."""
    creds = trusting(trusted_ca)
    async with grpc.aio.secure_channel(address, creds) as channel:
        try:
            resp = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    assert resp.status == SERVING
    return grpc.StatusCode.OK


async def eventually_ok(address: str, trusted_ca: Path) -> None:
    # The server looks at the files at most once a second, on a new handshake.
    async with asyncio.timeout(15):
        while await check(address, trusted_ca) != grpc.StatusCode.OK:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


@pytest.fixture
def pkis(tmp_path: Path) -> tuple[Pki, Pki]:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    return make_pki(tmp_path / "old"), make_pki(tmp_path / "new")


async def test_rotated_certificate_is_served_to_new_connections(
    rules_copy: Path, tmp_path: Path, pkis: tuple[Pki, Pki]
) -> None:
    old, new = pkis
    tls = tmp_path / "tls"
    tls.mkdir()
    mount(tls, 1, old)
    async with running_server(rules_copy, tls_cert=tls / "tls.crt", tls_key=tls / "tls.key") as s:
        address = f"localhost:{s.server.port}"
        assert await check(address, old.ca) == grpc.StatusCode.OK
        assert await check(address, new.ca) == grpc.StatusCode.UNAVAILABLE
        # A connection made before the rotation...
        kept = grpc.aio.secure_channel(address, trusting(old.ca))
        await health_pb2_grpc.HealthStub(kept).Check(health_pb2.HealthCheckRequest(), timeout=3)

        mount(tls, 2, new)
        await eventually_ok(address, new.ca)
        # A client that trusts only the old CA is now refused on a new connection...
        assert await check(address, old.ca) == grpc.StatusCode.UNAVAILABLE
        # ...while the connection opened before the rotation keeps working.
        resp = await health_pb2_grpc.HealthStub(kept).Check(
            health_pb2.HealthCheckRequest(), timeout=3
        )
        assert resp.status == SERVING
        await kept.close()
        assert _certs(s).reloads == 1


async def test_a_broken_rotation_keeps_the_old_certificate(
    rules_copy: Path, tmp_path: Path, pkis: tuple[Pki, Pki]
) -> None:
    old, new = pkis
    tls = tmp_path / "tls"
    tls.mkdir()
    mount(tls, 1, old)
    async with running_server(rules_copy, tls_cert=tls / "tls.crt", tls_key=tls / "tls.key") as s:
        address = f"localhost:{s.server.port}"
        # The new certificate with the old key: a pair that does not match.
        mount(tls, 2, new, key=old.server_key)
        certs = _certs(s)
        async with asyncio.timeout(15):
            while certs.errors == 0:
                assert await check(address, old.ca) == grpc.StatusCode.OK
                await asyncio.sleep(0.2)
        assert "does not belong" in certs.last_error
        assert await check(address, old.ca) == grpc.StatusCode.OK
        # Completing the rotation is picked up.
        mount(tls, 3, new)
        await eventually_ok(address, new.ca)


async def test_client_ca_rotation_with_mtls(
    rules_copy: Path, tmp_path: Path, pkis: tuple[Pki, Pki]
) -> None:
    old, new = pkis
    tls = tmp_path / "tls"
    tls.mkdir()
    mount(tls, 1, old)
    async with running_server(
        rules_copy,
        tls_cert=tls / "tls.crt",
        tls_key=tls / "tls.key",
        tls_client_ca=tls / "ca.crt",
    ) as s:
        address = f"localhost:{s.server.port}"

        async def mtls(pki: Pki) -> grpc.StatusCode:
            async with grpc.aio.secure_channel(address, presenting(pki)) as channel:
                try:
                    await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=3
                    )
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
            return grpc.StatusCode.OK

        assert await mtls(old) == grpc.StatusCode.OK
        mount(tls, 2, new)
        async with asyncio.timeout(15):
            while await mtls(new) != grpc.StatusCode.OK:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        assert await mtls(old) == grpc.StatusCode.UNAVAILABLE


def _certs(s: Running):  # type: ignore[no-untyped-def]
    certs = s.server.certificates
    assert certs is not None
    return certs
