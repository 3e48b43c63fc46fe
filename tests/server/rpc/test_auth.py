"""Tokens, the admin token, TLS and mTLS over real gRPC."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from certs import make_pki
from support import request, running_server

from server.api import decision_pb2_grpc as pb_grpc
from server.api import policy_pb2 as ppb
from server.bundle.tenant_config import hash_token
from server.config import ServeConfig
from server.rpc.auth import bearer_token

ADMIN = "admin-token-789"


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((), None),
        ((("authorization", "Bearer abc"),), "abc"),
        ((("authorization", "bearer   abc  "),), "abc"),
        ((("authorization", "Basic abc"),), None),
        ((("authorization", "Bearer "),), None),
        ((("x-other", "Bearer abc"),), None),
    ],
)
def test_bearer_token_parsing(metadata: tuple, token: str | None) -> None:  # type: ignore[type-arg]
    assert bearer_token(metadata) == token


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("wrong", grpc.StatusCode.PERMISSION_DENIED),
        (ADMIN, grpc.StatusCode.OK),
    ],
)
async def test_policy_service_needs_the_admin_token(
    rules_copy: Path, token: str | None, code: grpc.StatusCode
) -> None:
    async with running_server(rules_copy, admin_token_hashes=frozenset({hash_token(ADMIN)})) as s:
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        for call in (
            s.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(), metadata=metadata, timeout=5),
            s.policies.ValidatePolicy(
                ppb.ValidatePolicyRequest(source=""), metadata=metadata, timeout=5
            ),
        ):
            if code == grpc.StatusCode.OK:
                await call
            else:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() == code


async def _evaluate_over(address: str, creds: grpc.ChannelCredentials) -> grpc.StatusCode:
    async with grpc.aio.secure_channel(address, creds) as ch:
        try:
            await pb_grpc.DecisionServiceStub(ch).Evaluate(request("+8613800138000"), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_tls_and_mtls(rules_copy: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    trusting = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with_client_cert = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )
    untrusting = grpc.ssl_channel_credentials(root_certificates=pki.other_ca.read_bytes())

    async with running_server(rules_copy, tls_cert=pki.server_cert, tls_key=pki.server_key) as s:
        assert await _evaluate_over(s.address, trusting) == grpc.StatusCode.OK
        assert await _evaluate_over(s.address, untrusting) == grpc.StatusCode.UNAVAILABLE
        # Plaintext against a TLS port fails too.
        async with grpc.aio.insecure_channel(s.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError):
                await pb_grpc.DecisionServiceStub(ch).Evaluate(request("+8613800138000"), timeout=5)

    async with running_server(
        rules_copy, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca
    ) as s:
        assert await _evaluate_over(s.address, with_client_cert) == grpc.StatusCode.OK
        assert await _evaluate_over(s.address, trusting) == grpc.StatusCode.UNAVAILABLE


def test_config_rejects_half_tls(tmp_path: Path) -> None:
    import argparse

    from server.config import ConfigError, add_serve_arguments, from_namespace

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    with pytest.raises(ConfigError, match="go together"):
        from_namespace(parser.parse_args(["--tls-cert", str(tmp_path / "x.pem")]))
    with pytest.raises(ConfigError, match="HOST:PORT"):
        from_namespace(parser.parse_args(["--listen", "nope"]))
    assert isinstance(from_namespace(parser.parse_args([])), ServeConfig)
