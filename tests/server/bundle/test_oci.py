"""``serve --bundle oci://...`` against a real OCI registry (Debian's docker-registry),
artifacts pushed with the ORAS client: updates by tag, unchanged tags answered 304, a
pinned digest, credentials, artifacts that are not bundles, a layer over the limit, a
wrongly signed bundle and a registry that goes away; Evaluate never fails meanwhile."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import processes
import pytest
from bundle_support import (
    Keys,
    Traffic,
    bundle_status,
    holds,
    publish,
    readyz,
    reason,
    rules,
    serving,
    traffic_running,
    wait_for,
    wait_revision,
)
from conftest_registry import RegistryServer, RegistryUnavailable, TokenService
from support import Running

from server.bundle.remote import BundleSource

REPO = "risk/rules"
TAG = f"{REPO}:prod"


def bundle(tmp_path: Path, revision: str, key: Path | None, action: str = "block") -> Path:
    """A signed bundle file whose one rule answers ``revision`` as its reason."""
    out = tmp_path / "bundles"
    out.mkdir(exist_ok=True)
    publish(out, rules(tmp_path / revision, action, revision), key, revision, f"{revision}.tar.gz")
    return out / f"{revision}.tar.gz"


def pulls(registry: RegistryServer, what: str) -> list[int]:
    """Statuses of the registry's GETs of manifests or blobs."""
    return [
        status
        for status, method, path in registry.requests()
        if method == "GET" and f"/v2/{REPO}/{what}/" in path
    ]


@contextlib.asynccontextmanager
async def live_v1(
    tmp_path: Path, registry: RegistryServer, keys: Keys
) -> AsyncIterator[tuple[Running, BundleSource, Traffic]]:
    """v1 pushed to the tag and live on a server pulling it, with Evaluate traffic running
    (every call must succeed) until the block ends."""
    registry.push(bundle(tmp_path, "v1", keys.key), TAG)
    async with serving(tmp_path, registry.reference(TAG), keys) as (s, traffic):
        await wait_revision(s, "v1")
        assert await reason(s) == "v1"
        source = s.server.bundle_source
        assert source is not None
        async with traffic_running(traffic):
            yield s, source, traffic


async def test_a_new_tag_is_picked_up_and_an_unchanged_one_costs_a_304(
    tmp_path: Path, registry: RegistryServer, keys: Keys
) -> None:
    async with live_v1(tmp_path, registry, keys) as (s, source, traffic):
        polls = source.polls
        await wait_for(lambda: holds(source.polls >= polls + 3))
        st = await bundle_status(s)
        assert (st.revision, st.last_error) == ("v1", "")
        assert st.etag.startswith("sha256:")  # the manifest's digest
        assert st.source == f"oci+http://127.0.0.1:{registry.port}/{TAG}"
        digest = registry.push(bundle(tmp_path, "v2", keys.key, "review"), TAG)
        await wait_revision(s, "v2")
        assert await reason(s) == "v2"
        assert (await bundle_status(s)).etag == digest
    assert set(traffic.reasons) <= {"v1", "v2"}
    manifests = pulls(registry, "manifests")
    assert manifests.count(200) == 2, manifests  # v1, then v2
    assert manifests.count(304) >= 3, manifests  # every other poll
    assert pulls(registry, "blobs") == [200, 200]  # each bundle layer fetched once


async def test_a_pinned_digest_is_what_is_served(
    tmp_path: Path, registry: RegistryServer, keys: Keys
) -> None:
    pinned = registry.push(bundle(tmp_path, "v1", keys.key), TAG)
    registry.push(bundle(tmp_path, "v2", keys.key), TAG)  # the tag moves on
    async with serving(tmp_path, registry.reference(f"{REPO}@{pinned}"), keys) as (s, _):
        await wait_revision(s, "v1")
        assert await reason(s) == "v1"


async def test_credentials_are_sent_to_a_registry_that_wants_them(
    tmp_path: Path, keys: Keys
) -> None:
    def start() -> RegistryServer:
        return RegistryServer.start(tmp_path / "registry", user="ci", password="s3cret")

    with processes.running(start, RegistryUnavailable) as registry:
        registry.push(bundle(tmp_path, "v1", keys.key), TAG)
        url = registry.reference(TAG)
        async with serving(tmp_path / "without", url, keys) as (s, _):
            source = s.server.bundle_source
            assert source is not None
            await wait_for(lambda: holds(source.status.results["error"] >= 1))
            assert "HTTP 401" in (await bundle_status(s)).last_error
            assert await readyz(s) == 503
        async with serving(tmp_path / "with", url, keys, token="ci:s3cret") as (s, _):
            await wait_revision(s, "v1")
            assert await reason(s) == "v1"


async def test_a_registry_with_a_token_service_gets_a_pull_token(
    tmp_path: Path, keys: Keys
) -> None:
    """The challenge Docker Hub, GHCR and Harbor answer with: ``Bearer realm=...``. The
    server asks the realm for a token for pulling this repository only, with its
    credentials, and pulls with the token; credentials never go to the registry itself."""
    tokens = TokenService(tmp_path / "tokens", "ci", "s3cret")

    def start() -> RegistryServer:
        return RegistryServer.start(
            tmp_path / "registry", user="ci", password="s3cret", tokens=tokens
        )

    with contextlib.closing(tokens), processes.running(start, RegistryUnavailable) as registry:
        registry.push(bundle(tmp_path, "v1", keys.key), TAG)
        url = registry.reference(TAG)
        pushed = len(tokens.seen)
        # The token service runs on another port than the registry: the operator allows it.
        allowed = (tokens.realm.split("/")[2],)
        async with serving(tmp_path / "without", url, keys, token_realm_hosts=allowed) as (s, _):
            source = s.server.bundle_source
            assert source is not None
            await wait_for(lambda: holds(source.status.results["error"] >= 1))
            assert "token service answered HTTP 401" in source.status.last_error
        async with serving(
            tmp_path / "with", url, keys, token="ci:s3cret", token_realm_hosts=allowed
        ) as (s, _):
            await wait_revision(s, "v1")
            assert await reason(s) == "v1"
            source = s.server.bundle_source
            assert source is not None
            polls = source.polls
            await wait_for(lambda: holds(source.polls >= polls + 3))
            assert (await bundle_status(s)).last_error == ""
        ours = tokens.seen[pushed:]
        assert {scope for scope, _ in ours} == {f"repository:{REPO}:pull"}
        assert any(auth.startswith("Basic ") for _, auth in ours)


@pytest.mark.parametrize(
    ("media_type", "message"),
    [
        ("application/vnd.oci.image.layer.v1.tar+gzip", "exactly one layer of type"),
        ("application/octet-stream", "exactly one layer of type"),
    ],
)
async def test_an_artifact_that_is_no_bundle_keeps_the_live_policy(
    tmp_path: Path, registry: RegistryServer, keys: Keys, media_type: str, message: str
) -> None:
    async with live_v1(tmp_path, registry, keys) as (s, source, _):
        registry.push(bundle(tmp_path, "v2", keys.key), TAG, media_type=media_type)
        await wait_for(lambda: holds(message in source.status.last_error))
        assert await reason(s) == "v1"
        assert await readyz(s) == 200
    assert pulls(registry, "blobs") == [200]  # the other layer was never fetched


async def test_a_layer_over_the_limit_is_refused_before_it_is_fetched(
    tmp_path: Path, registry: RegistryServer, keys: Keys
) -> None:
    big = bundle(tmp_path, "v1", keys.key)
    with big.open("ab") as fh:  # padding: refused by the manifest's size, never unpacked
        fh.write(b"\0" * (2 << 20))
    registry.push(big, TAG)
    url = registry.reference(TAG)
    async with serving(tmp_path, url, keys, max_bytes=1 << 20) as (s, _):
        source = s.server.bundle_source
        assert source is not None
        await wait_for(lambda: holds(source.status.results["error"] >= 1))
        assert "more than the limit 1048576" in source.status.last_error
    assert pulls(registry, "blobs") == []


async def test_a_wrongly_signed_bundle_is_refused_and_not_fetched_again(
    tmp_path: Path, registry: RegistryServer, keys: Keys
) -> None:
    async with live_v1(tmp_path, registry, keys) as (s, source, _):
        registry.push(bundle(tmp_path, "v2", keys.other_key), TAG)
        await wait_for(lambda: holds(source.status.results["rejected"] == 1))
        assert "bundle refused" in source.status.last_error
        polls = source.polls
        await wait_for(lambda: holds(source.polls >= polls + 3))
        assert source.status.results["rejected"] == 1  # not downloaded again
        assert await reason(s) == "v1"
    assert pulls(registry, "blobs") == [200, 200]


async def test_a_registry_that_goes_away_keeps_the_live_policy(
    tmp_path: Path, registry: RegistryServer, keys: Keys
) -> None:
    async with live_v1(tmp_path, registry, keys) as (s, source, traffic):
        registry.stop()
        await wait_for(lambda: holds("download failed" in source.status.last_error))
        assert await reason(s) == "v1"
        assert await readyz(s) == 200
        restarted = RegistryServer.start(registry.work, port=registry.port)
        try:
            await wait_for(lambda: holds(source.status.last_error == ""))
        finally:
            restarted.stop()
    assert set(traffic.reasons) == {"v1"}
