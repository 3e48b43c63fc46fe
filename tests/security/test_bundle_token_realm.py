"""An OCI registry names the token service the server asks for a pull token (the ``realm``
of its ``Bearer`` challenge). A registry that names an internal address would make the pod
fetch that URL, with the registry credentials, and send whatever it answered back to the
registry as a bearer token: a way to read internal services (instance metadata, admin
endpoints) from outside. The server asks only the registry's own host and port, or a host
the operator allowed, and never follows a redirect from a token service.

The registry is a real docker-registry with token authentication; the "internal service"
is a real nginx whose access log shows whether anything reached it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import processes
import pytest
from bundle_support import Keys, holds, make_keys, publish, rules, serving, wait_for
from conftest_nginx import NginxServer, NginxUnavailable
from conftest_registry import RegistryServer, RegistryUnavailable, TokenService

TAG = "risk/rules:prod"
SECRET = "internal-secret-the-registry-wants"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def internal(tmp_path: Path) -> Iterator[NginxServer]:
    """An internal service the registry's owner cannot reach, but the pod can."""
    www = tmp_path / "internal-www"
    (www / "internal").mkdir(parents=True)
    (www / "internal" / "index.html").write_text(f'{{"token": "{SECRET}"}}')
    with processes.running(
        lambda: NginxServer.start(tmp_path / "internal-nginx", www), NginxUnavailable
    ) as server:
        yield server


@contextlib.contextmanager
def registry_pointing_at(tmp_path: Path, keys: Keys, realm: str) -> Iterator[RegistryServer]:
    """A registry holding a signed bundle, whose challenge names ``realm``. The bundle is
    pushed while the registry still names its real token service."""
    tokens = TokenService(tmp_path / "tokens", "ci", "s3cret")
    work = tmp_path / "registry"
    with contextlib.closing(tokens):
        first = RegistryServer.start(work, user="ci", password="s3cret", tokens=tokens)
        try:
            out = tmp_path / "bundles"
            out.mkdir()
            publish(out, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1", "v1.tar.gz")
            first.push(out / "v1.tar.gz", TAG)
        finally:
            first.stop()
        tokens.realm = realm

        def start() -> RegistryServer:
            return RegistryServer.start(
                work, user="ci", password="s3cret", tokens=tokens, port=first.port
            )

        with processes.running(start, RegistryUnavailable) as registry:
            yield registry


def internal_hits(internal: NginxServer) -> list[str]:
    return [path for _, path in internal.requests() if path.startswith(("/internal", "/redirect"))]


async def last_error_of(tmp_path: Path, url: str, keys: Keys, **bundle: object) -> str:
    async with serving(tmp_path, url, keys, token="ci:s3cret", **bundle) as (s, _):
        source = s.server.bundle_source
        assert source is not None
        await wait_for(lambda: holds(source.status.results["error"] >= 2))
        assert source.status.revision == ""
        return source.status.last_error


async def test_a_realm_on_another_host_is_never_asked(
    tmp_path: Path, keys: Keys, internal: NginxServer
) -> None:
    with registry_pointing_at(tmp_path, keys, internal.url("internal/")) as registry:
        error = await last_error_of(tmp_path / "pod", registry.reference(TAG), keys)
    assert f"token requests to 127.0.0.1:{internal.port}, which is not the registry" in error
    assert SECRET not in error
    assert internal_hits(internal) == []


async def test_the_same_realm_is_asked_once_the_operator_allows_its_host(
    tmp_path: Path, keys: Keys, internal: NginxServer
) -> None:
    """The control: with the host allowed the request does go out (so the test above
    would see it), and the registry refuses what came back."""
    with registry_pointing_at(tmp_path, keys, internal.url("internal/")) as registry:
        allowed = (f"127.0.0.1:{internal.port}",)
        error = await last_error_of(
            tmp_path / "pod", registry.reference(TAG), keys, token_realm_hosts=allowed
        )
    assert "HTTP 401" in error
    assert internal_hits(internal)
    assert all(
        path.startswith("/internal/?scope=repository%3Arisk%2Frules%3Apull")
        for path in internal_hits(internal)
    )


async def test_an_allowed_token_service_that_redirects_is_not_followed(
    tmp_path: Path, keys: Keys, internal: NginxServer
) -> None:
    with registry_pointing_at(tmp_path, keys, internal.url("redirect/")) as registry:
        allowed = (f"127.0.0.1:{internal.port}",)
        error = await last_error_of(
            tmp_path / "pod", registry.reference(TAG), keys, token_realm_hosts=allowed
        )
    assert "token service answered HTTP 302" in error
    hits = internal_hits(internal)
    assert hits
    assert all(path.startswith("/redirect/") for path in hits)
