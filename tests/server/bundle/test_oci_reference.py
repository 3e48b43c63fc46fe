"""Which ``--bundle oci://...`` references are taken, and the message for each that is not."""

from __future__ import annotations

import argparse

import httpx
import pytest

from server.bundle.oci import OciError, OciReference, RegistryAuth, parse_reference
from server.config import ConfigError, add_serve_arguments, from_namespace

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("oci://r.example/risk/rules:prod", ("https", "r.example", "risk/rules", "prod")),
        ("oci://r.example/rules", ("https", "r.example", "rules", "latest")),
        ("oci://r.example:5000/a/b/c:v1.2_3", ("https", "r.example:5000", "a/b/c", "v1.2_3")),
        (f"oci://r.example/rules@{DIGEST}", ("https", "r.example", "rules", DIGEST)),
        ("oci+http://127.0.0.1:5000/rules:t", ("http", "127.0.0.1:5000", "rules", "t")),
        ("oci+http://[::1]:5000/rules:t", ("http", "[::1]:5000", "rules", "t")),
        ("oci://r.example/a.b__c-d/e:tag", ("https", "r.example", "a.b__c-d/e", "tag")),
    ],
)
def test_references(url: str, expected: tuple[str, str, str, str]) -> None:
    ref = parse_reference(url)
    assert ref == OciReference(*expected)
    # Printed back as given (with the default tag made explicit).
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("oci://r.example", "expected a repository after the registry"),
        ("oci://r.example/", "expected a repository after the registry"),
        ("oci://user:pw@r.example/rules", "not a registry host[:port]"),
        ("oci://r.example/Rules:prod", "not a repository name"),
        ("oci://r.example/rules/../x:prod", "not a repository name"),
        ("oci://r.example/rules:-bad", "not a tag"),
        ("oci://r.example/rules:" + "t" * 129, "not a tag"),
        ("oci://r.example/rules@sha256:abc", "not a sha256 digest"),
        ("oci://r.example/rules@md5:" + "a" * 32, "not a sha256 digest"),
        ("oci://r.example/rules?x=1", "not a repository name"),
        ("oci://r.ex ample/rules", "not a registry host[:port]"),
        ("ocis://r.example/rules", "expected oci://"),
    ],
)
def test_refused_references(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_reference(url)


def test_serve_refuses_a_bad_reference_with_the_reason() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    ns = parser.parse_args(["--bundle", "oci://r.example/Rules", "--bundle-allow-unsigned", "1"])
    with pytest.raises(ConfigError, match=r"^--bundle: not a repository name: 'Rules'"):
        from_namespace(ns)


def _no_requests(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a request was sent to {request.url}")


@pytest.mark.parametrize(
    ("challenge", "error"),
    [
        # The realm is the registry's to name: never the credentials in the clear...
        ('Bearer realm="http://evil.example/token",service="r"', "token service is plain http"),
        # ...nor anything but an http(s) URL (a file, the instance metadata by other means).
        ('Bearer realm="file:///etc/passwd"', ""),
        ('Bearer realm="gopher://10.0.0.1/"', ""),
        ("Bearer", ""),
        ('Negotiate realm="x"', "'negotiate' authentication, which is not supported"),
        ("Basic realm=x", ""),  # a token credential is no Basic credential
    ],
)
async def test_a_challenge_the_server_will_not_answer(challenge: str, error: str) -> None:
    """Nothing is sent anywhere for these challenges (the client has no route at all):
    either an error says why, or there is nothing to offer and the 401 stands."""
    creds = "ci:s3cret" if "plain http" in error else "a-token"
    auth = RegistryAuth(parse_reference("oci://r.example/rules:prod"), creds)
    before = auth.headers()
    async with httpx.AsyncClient(transport=httpx.MockTransport(_no_requests)) as client:
        if error:
            with pytest.raises(OciError, match=error):
                await auth.answer(client, challenge)
        else:
            assert await auth.answer(client, challenge) is False
    assert auth.headers() == before


def _token_service(seen: list[str], status: int = 200):  # type: ignore[no-untyped-def]
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.copy_with(query=None)))
        if status != 200:
            return httpx.Response(status, headers={"location": "http://10.0.0.1/latest"})
        return httpx.Response(200, json={"token": "pull-token"})

    return handler


@pytest.mark.parametrize(
    ("registry", "realm", "allowed", "asked"),
    [
        ("r.example", "https://r.example/token", (), True),
        ("r.example", "https://r.example:443/token", (), True),
        ("r.example:5000", "https://r.example:5000/token", (), True),
        ("r.example", "https://R.EXAMPLE/token", (), True),
        # Another host, or another port of the same host: only when the operator allows it.
        ("r.example", "https://169.254.169.254/latest/meta-data", (), False),
        ("r.example", "https://r.example:8443/token", (), False),
        ("r.example", "https://auth.example/token", (), False),
        ("r.example", "https://auth.example/token", ("auth.example",), True),
        ("r.example", "https://auth.example:8443/token", ("auth.example",), True),
        ("r.example", "https://auth.example:8443/token", ("auth.example:443",), False),
        ("r.example", "https://auth.example.evil/token", ("auth.example",), False),
        ("r.example", "https://user@r.example/token", (), False),
    ],
)
async def test_a_token_realm_is_asked_only_on_the_registry_or_an_allowed_host(
    registry: str, realm: str, allowed: tuple[str, ...], asked: bool
) -> None:
    seen: list[str] = []
    auth = RegistryAuth(
        parse_reference(f"oci://{registry}/rules:prod"), "ci:s3cret", realm_hosts=allowed
    )
    transport = httpx.MockTransport(_token_service(seen))
    async with httpx.AsyncClient(transport=transport) as client:
        if asked:
            assert await auth.answer(client, f'Bearer realm="{realm}",service="r"')
            assert auth.headers() == {"Authorization": "Bearer pull-token"}
        else:
            with pytest.raises(OciError, match=r"not the registry itself|no plain host"):
                await auth.answer(client, f'Bearer realm="{realm}",service="r"')
    assert len(seen) == int(asked)


async def test_a_token_service_that_redirects_is_not_followed() -> None:
    seen: list[str] = []
    auth = RegistryAuth(parse_reference("oci://r.example/rules:prod"), "ci:s3cret")
    transport = httpx.MockTransport(_token_service(seen, status=302))
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        with pytest.raises(OciError, match="answered HTTP 302"):
            await auth.answer(client, 'Bearer realm="https://r.example/token"')
    assert seen == ["https://r.example/token"]


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        (["auth.docker.io", " gitlab.com:443 ", ""], ""),
        (["[::1]:5000"], ""),
        (["https://auth.docker.io"], "not a host"),
        (["user@host"], "not a host"),
        (["host/path"], "not a host"),
        (["host:99999"], "not a host"),
    ],
)
def test_realm_hosts_are_checked(entries: list[str], error: str) -> None:
    from server.bundle.oci import parse_realm_hosts

    if error:
        with pytest.raises(ValueError, match=error):
            parse_realm_hosts(entries)
    else:
        assert parse_realm_hosts(entries) == tuple(e.strip().lower() for e in entries if e.strip())
