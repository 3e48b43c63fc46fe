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


async def test_credentials_for_a_tls_registry_never_go_to_a_plain_http_realm() -> None:
    """The token realm is the registry's to name; pointing it at http:// must not make the
    server send its Basic credentials in the clear (nothing is sent at all: the client has
    no route anywhere)."""
    auth = RegistryAuth(parse_reference("oci://r.example/rules:prod"), "ci:s3cret")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a request was sent to {request.url}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        challenge = 'Bearer realm="http://evil.example/token",service="r"'
        with pytest.raises(OciError, match="token service is plain http"):
            await auth.answer(client, challenge)
    assert auth.headers() == {}
