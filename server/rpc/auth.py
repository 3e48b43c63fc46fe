"""Bearer-token checks: per-tenant tokens for DecisionService, an admin token for PolicyService.

Tokens are stored as SHA-256 digests and compared with ``hmac.compare_digest`` so neither the
config nor the timing of a comparison reveals a token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from server.bundle.tenant_config import TenantConfig
from server.rpc.errors import RequestError

_PREFIX = "bearer "


def bearer_token(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer ...`` entry in gRPC invocation metadata."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if text[: len(_PREFIX)].lower() == _PREFIX:
                return text[len(_PREFIX) :].strip() or None
            return None
    return None


def digest_in(digest: str, hashes: Iterable[str]) -> bool:
    # Compare against every stored hash (no early exit) so timing does not tell which.
    found = False
    for h in hashes:
        found |= hmac.compare_digest(digest, h)
    return found


def authorize_tenant(
    config: TenantConfig, token: str | None, others: Callable[[], Iterable[TenantConfig]]
) -> None:
    """``others`` lists every tenant's config; it is only called when the token fails."""
    """Raise UNAUTHENTICATED / PERMISSION_DENIED unless ``token`` opens this tenant."""
    if config.open_access:
        return
    if token is None:
        raise RequestError(
            grpc.StatusCode.UNAUTHENTICATED, "missing bearer token (authorization metadata)"
        )
    digest = hashlib.sha256(token.encode()).hexdigest()
    if digest_in(digest, config.token_hashes):
        return
    if any(digest_in(digest, o.token_hashes) for o in others() if o is not config):
        raise RequestError(grpc.StatusCode.PERMISSION_DENIED, "token is not valid for this tenant")
    raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")


def authorize_stream(token: str | None, configs: Iterable[TenantConfig]) -> None:
    """Raise UNAUTHENTICATED unless ``token`` opens some tenant, before a stream takes its
    first message: a stream lives long, so one that could only ever be refused is ended
    at once instead of being held open. Every item is still authorised for its tenant.
    While any tenant is open, a stream needs no token (it may be for that tenant)."""
    configs = list(configs)
    if any(c.open_access for c in configs):
        return
    if token is None:
        raise RequestError(
            grpc.StatusCode.UNAUTHENTICATED, "missing bearer token (authorization metadata)"
        )
    digest = hashlib.sha256(token.encode()).hexdigest()
    found = False
    for c in configs:  # every tenant, no early exit: timing does not tell which matched
        found |= digest_in(digest, c.token_hashes)
    if not found:
        raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")


def authorize_admin(admin_hashes: frozenset[str], token: str | None) -> None:
    if not admin_hashes:
        return
    if token is None:
        raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "missing admin bearer token")
    digest = hashlib.sha256(token.encode()).hexdigest()
    if not digest_in(digest, admin_hashes):
        raise RequestError(grpc.StatusCode.PERMISSION_DENIED, "not an admin token")
