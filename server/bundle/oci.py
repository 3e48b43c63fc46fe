"""Bundles from an OCI registry: the rules bundle as an artifact, pulled as any OCI client
pulls (the distribution spec's manifest and blob endpoints).

A bundle is published as an OCI artifact whose one layer is the bundle archive, with the
media type :data:`MEDIA_TYPE`; ``oras`` does it in one command::

    oras push registry.example/risk/rules:prod \\
        bundle.tar.gz:application/vnd.ringfence.bundle.v1.tar+gzip

The server is given ``oci://registry.example/risk/rules:prod`` (or ``...@sha256:<digest>``
to pin one artifact; ``oci+http://`` for a registry without TLS, on a loopback or lab
network). A poll asks for the manifest with ``If-None-Match`` set to the digest of the last
one processed, so an unchanged tag costs one 304 (or one small manifest); a changed one
names the layer, whose size is checked against the limit before a byte of it is fetched and
whose digest is checked after. The archive inside is then verified (signature, hashes) like
any bundle: the registry is a transport, never a source of trust.

Registries that want credentials answer 401 with a challenge: ``Basic`` is answered with
the configured ``user:password``; ``Bearer realm=...`` (Docker Hub, GHCR, Harbor, ...) by
fetching a pull token from the realm, anonymously or with those credentials.

The realm is the registry's to name, so a registry (or whoever answers in its place) could
point it at an internal address: the pod would fetch that URL, with the credentials, and
send whatever it answered back to the registry as a bearer token. A realm is therefore
asked only on the registry's own host and port, or on a host the operator allows
(``--bundle-token-realm-hosts``: Docker Hub's ``auth.docker.io``, GitLab's ``gitlab.com``),
never through a redirect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

MEDIA_TYPE = "application/vnd.ringfence.bundle.v1.tar+gzip"
SCHEMES = {"oci": "https", "oci+http": "http"}
_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_MANIFEST_BYTES = 4 << 20  # the distribution spec's own ceiling for a manifest

# The distribution spec's grammar for names, tags and digests.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class OciError(Exception):
    """The registry answered, but not with a bundle artifact we can take."""


@dataclass(frozen=True, slots=True)
class OciReference:
    scheme: str  # "https" or "http"
    registry: str  # host[:port]
    repository: str
    reference: str  # a tag, or sha256:<hex>

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.registry}/v2/{self.repository}"

    def __str__(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        prefix = "oci" if self.scheme == "https" else "oci+http"
        return f"{prefix}://{self.registry}/{self.repository}{sep}{self.reference}"


def is_oci(url: str) -> bool:
    return url.split("://", 1)[0] in SCHEMES and "://" in url


def parse_reference(url: str) -> OciReference:
    """``oci://host[:port]/name[:tag|@sha256:hex]``; the tag defaults to ``latest``.
    Raises ValueError with what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError("expected oci://registry/repository:tag (or oci+http:// without TLS)")
    registry, slash, path = rest.partition("/")
    if not slash or not path:
        raise ValueError("expected a repository after the registry: oci://registry/repository")
    if "@" in registry or not _HOST.fullmatch(registry):
        raise ValueError(f"not a registry host[:port]: {registry!r} (credentials go in a file)")
    if "@" in path:
        name, _, reference = path.partition("@")
        if not _DIGEST.fullmatch(reference):
            raise ValueError(f"not a sha256 digest: {reference!r}")
    else:
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            name, _, reference = path.rpartition(":")
        else:
            name, reference = path, "latest"
        if not _TAG.fullmatch(reference):
            raise ValueError(f"not a tag: {reference!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a repository name: {name!r} (lower case, digits, . _ - and /)")
    return OciReference(SCHEMES[scheme], registry, name, reference)


@dataclass(frozen=True, slots=True)
class Layer:
    manifest_digest: str
    digest: str
    size: int


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _host_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    """``host[:port]`` as (lower-case host without brackets, port or None)."""
    parts = urlsplit(f"{scheme}://{netloc}")
    port = parts.port
    return (parts.hostname or "").lower(), port


def parse_realm_hosts(entries: Iterable[str]) -> tuple[str, ...]:
    """Validate the operator's realm hosts (``host`` or ``host:port``); ValueError names a
    bad entry."""
    out = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        if "/" in entry or "@" in entry or not _HOST.fullmatch(entry):
            raise ValueError(f"not a host or host:port: {entry!r}")
        try:
            _host_port(entry, "https")
        except ValueError:
            raise ValueError(f"not a host or host:port: {entry!r}") from None
        out.append(entry.lower())
    return tuple(out)


class RegistryAuth:
    """Answers a registry's 401 challenge once and reuses the answer until the next 401."""

    def __init__(
        self, ref: OciReference, credentials: str = "", *, realm_hosts: Iterable[str] = ()
    ) -> None:
        self.ref = ref
        self._realm_hosts = tuple(realm_hosts)
        user, colon, password = credentials.partition(":")
        self._basic = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if colon else ""
        )
        # A credential without a colon is a token the registry takes as it is.
        self._static = f"Bearer {credentials}" if credentials and not colon else ""
        self._header = self._static

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._header} if self._header else {}

    async def answer(self, client: httpx.AsyncClient, challenge: str) -> bool:
        """Prepare credentials for ``challenge`` (a WWW-Authenticate value); False when
        there is nothing new to offer."""
        kind, _, params = challenge.strip().partition(" ")
        kind = kind.lower()
        if kind == "basic":
            if not self._basic or self._header == self._basic:
                return False
            self._header = self._basic
            return True
        if kind != "bearer":
            raise OciError(f"the registry asks for {kind!r} authentication, which is not supported")
        fields = dict(_CHALLENGE.findall(params))
        realm = fields.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            if self._static and self._header != self._static:
                self._header = self._static
                return True
            return False
        if realm.startswith("http://") and self.ref.scheme == "https":
            # The realm is the registry's to name: credentials meant for a TLS registry are
            # never sent in the clear to wherever it points.
            raise OciError("the registry's token service is plain http; refusing to use it")
        self._check_realm(realm)
        query = {"scope": f"repository:{self.ref.repository}:pull"}
        if service := fields.get("service"):
            query["service"] = service
        headers = {"Authorization": self._basic} if self._basic else {}
        request = client.build_request("GET", realm, params=query, headers=headers)
        # No redirects: an allowed host must not be a way to reach any other.
        resp = await client.send(request, stream=True, follow_redirects=False)
        try:
            if resp.status_code != 200:
                raise OciError(f"the registry's token service answered HTTP {resp.status_code}")
            body = _json(await read_limited(resp, 64 * 1024))
        finally:
            await resp.aclose()
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OciError("the registry's token service gave no token")
        header = f"Bearer {token}"
        if header == self._header:
            return False  # the same token was just refused
        self._header = header
        return True

    def _check_realm(self, realm: str) -> None:
        """Refuse a token service that is neither on the registry's own host and port nor
        on a host the operator allowed (never quoting the realm's query or user info)."""
        try:
            parts = urlsplit(realm)
            host, port = (parts.hostname or "").lower(), parts.port
        except ValueError:
            raise OciError("the registry's token service URL is not a URL") from None
        if not host or parts.username is not None:
            raise OciError("the registry's token service URL has no plain host")
        default = _DEFAULT_PORTS.get(parts.scheme, 0)
        port = port or default
        own_host, own_port = _host_port(self.ref.registry, self.ref.scheme)
        if (host, port) == (own_host, own_port or _DEFAULT_PORTS[self.ref.scheme]):
            return
        for entry in self._realm_hosts:
            allowed_host, allowed_port = _host_port(entry, parts.scheme)
            if host == allowed_host and (allowed_port is None or allowed_port == port):
                return
        shown = f"[{host}]" if ":" in host else host
        raise OciError(
            f"the registry sends its token requests to {shown}:{port}, which is not the "
            "registry itself; allow that host with --bundle-token-realm-hosts if it is the "
            "registry's real token service"
        )


async def get(
    client: httpx.AsyncClient,
    auth: RegistryAuth,
    url: str,
    headers: dict[str, str],
    *,
    stream: bool = False,
) -> httpx.Response:
    """GET with the registry's authentication; a 401 is answered once, then retried."""

    async def send() -> httpx.Response:
        request = client.build_request("GET", url, headers={**headers, **auth.headers()})
        return await client.send(request, stream=stream)

    resp = await send()
    if resp.status_code != 401:
        return resp
    challenge = resp.headers.get("www-authenticate", "")
    await resp.aclose()
    if not challenge or not await auth.answer(client, challenge):
        return resp
    return await send()


async def resolve(
    client: httpx.AsyncClient, auth: RegistryAuth, ref: OciReference, etag: str
) -> Layer | None:
    """The bundle layer the reference names now; None when its manifest is still ``etag``
    (a manifest digest)."""
    headers = {"Accept": ", ".join(_MANIFEST_TYPES)}
    if etag:
        headers["If-None-Match"] = f'"{etag}"'
    resp = await get(client, auth, f"{ref.base}/manifests/{ref.reference}", headers, stream=True)
    try:
        if resp.status_code == 304:
            return None
        if resp.status_code == 404:
            raise OciError(f"{ref}: no such manifest in the registry")
        if resp.status_code != 200:
            raise OciError(f"HTTP {resp.status_code} for the manifest of {ref}")
        content = await read_limited(resp, MAX_MANIFEST_BYTES)
    finally:
        await resp.aclose()
    digest = resp.headers.get("docker-content-digest", "")
    actual = "sha256:" + hashlib.sha256(content).hexdigest()
    if ref.reference.startswith("sha256:") and actual != ref.reference:
        raise OciError(
            f"the registry sent a manifest whose digest is {actual}, not {ref.reference}"
        )
    if digest and digest != actual:
        raise OciError("the manifest's content does not match the digest the registry gave")
    if digest == etag and etag:
        return None  # a registry that ignores If-None-Match: nothing new either way
    return Layer(actual, *_bundle_layer(_json(content)))


def _bundle_layer(manifest: dict[str, Any]) -> tuple[str, int]:
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise OciError("the manifest has no layers: not an artifact")
    found = [
        layer
        for layer in layers
        if isinstance(layer, dict) and layer.get("mediaType") == MEDIA_TYPE
    ]
    if len(found) != 1:
        raise OciError(
            f"the artifact must have exactly one layer of type {MEDIA_TYPE}, it has {len(found)}"
        )
    digest, size = found[0].get("digest"), found[0].get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise OciError(f"the bundle layer's digest is not sha256:<hex>: {str(digest)[:80]!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OciError("the bundle layer has no size")
    return digest, size


async def read_limited(resp: httpx.Response, limit: int) -> bytes:
    """A small answer's body, refused past ``limit`` bytes without reading the rest."""
    length = resp.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise OciError(f"the registry's answer is larger than {limit} bytes")
    out = bytearray()
    async for chunk in resp.aiter_bytes():
        out += chunk
        if len(out) > limit:
            raise OciError(f"the registry's answer is larger than {limit} bytes")
    return bytes(out)


def _json(content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError:
        raise OciError("the registry's answer is not JSON") from None
    if not isinstance(body, dict):
        raise OciError("the registry's answer is not a JSON object")
    return body
