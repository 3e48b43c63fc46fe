"""A registry is a transport, never trusted: one that lies (a manifest that is not the
digest it claims, a layer that is not its digest or larger than its manifest says, a
manifest of megabytes, a token realm in the clear) gets a clear error and the live policy
stays. The lying registry is nginx serving files laid out as the distribution API's paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from bundle_support import (
    Keys,
    bundle_status,
    holds,
    publish,
    rules,
    serving,
    wait_for,
    wait_revision,
)
from conftest_nginx import NginxServer

from server.bundle.oci import MEDIA_TYPE

REPO = "risk/rules"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def lay_out(
    www: Path,
    blob: bytes,
    *,
    tag: str = "prod",
    layer_digest: str | None = None,
    layer_size: int | None = None,
    manifest: bytes | None = None,
) -> bytes:
    """Write a manifest (by tag) naming ``blob`` as the bundle layer, and the blob; the
    manifest's bytes. The digest and size it states may lie."""
    base = www / "v2" / REPO
    (base / "manifests").mkdir(parents=True, exist_ok=True)
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    if manifest is None:
        layer = {
            "mediaType": MEDIA_TYPE,
            "digest": layer_digest or sha(blob),
            "size": len(blob) if layer_size is None else layer_size,
        }
        config = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(b"{}"), "size": 2}
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config,
                "layers": [layer],
            }
        ).encode()
    (base / "manifests" / tag).write_bytes(manifest)
    (base / "blobs" / sha(blob)).write_bytes(blob)
    if layer_digest:
        (base / "blobs" / layer_digest).write_bytes(blob)
    return manifest


def signed_bundle(tmp_path: Path, keys: Keys) -> bytes:
    out = tmp_path / "bundles"
    out.mkdir()
    publish(out, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1", "v1.tar.gz")
    return (out / "v1.tar.gz").read_bytes()


def reference(nginx: NginxServer, ref: str = f"{REPO}:prod") -> str:
    return f"oci+http://127.0.0.1:{nginx.port}/{ref}"


async def error_of(tmp_path: Path, url: str, keys: Keys, **bundle: object) -> str:
    async with serving(tmp_path, url, keys, **bundle) as (s, _):
        source = s.server.bundle_source
        assert source is not None
        await wait_for(lambda: holds(source.status.last_error != ""))
        status = await bundle_status(s)
        assert status.revision == ""  # nothing was activated
        return status.last_error


async def test_the_static_layout_serves_a_good_bundle(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    """The control: laid out honestly, the same files are a bundle the server takes."""
    lay_out(nginx.www, signed_bundle(tmp_path, keys))
    async with serving(tmp_path, reference(nginx), keys) as (s, _):
        await wait_revision(s, "v1")


async def test_a_layer_that_is_not_its_digest_is_refused(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    blob = signed_bundle(tmp_path, keys)
    lay_out(nginx.www, blob, layer_digest=sha(b"something else"))
    error = await error_of(tmp_path, reference(nginx), keys)
    assert "content does not match its digest" in error


async def test_a_layer_larger_than_its_manifest_says_stops_at_the_limit(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    blob = signed_bundle(tmp_path, keys) + b"\0" * (2 << 20)
    lay_out(nginx.www, blob, layer_size=100)
    error = await error_of(tmp_path, reference(nginx), keys, max_bytes=1 << 20)
    assert "more than the limit 1048576" in error or "exceeds the limit of 1048576" in error


async def test_a_manifest_of_megabytes_is_not_read(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    lay_out(nginx.www, b"x", manifest=b"{" + b" " * (5 << 20) + b"}")
    error = await error_of(tmp_path, reference(nginx), keys)
    assert "larger than 4194304 bytes" in error


async def test_a_pinned_digest_gets_exactly_that_manifest(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    manifest = lay_out(nginx.www, signed_bundle(tmp_path, keys))
    wanted = sha(manifest + b" ")  # another manifest's digest; the file served is this one
    (nginx.www / "v2" / REPO / "manifests" / wanted).write_bytes(manifest)
    error = await error_of(tmp_path, reference(nginx, f"{REPO}@{wanted}"), keys)
    assert f"not {wanted}" in error


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schemaVersion": 2}', "no layers"),
        (b'{"layers": [{"mediaType": "' + MEDIA_TYPE.encode() + b'", "size": 1}]}', "digest"),
        (
            b'{"layers": [{"mediaType": "'
            + MEDIA_TYPE.encode()
            + b'", "digest": "sha256:'
            + b"a" * 64
            + b'", "size": -1}]}',
            "has no size",
        ),
    ],
)
async def test_a_manifest_that_is_no_artifact_manifest(
    tmp_path: Path, nginx: NginxServer, keys: Keys, manifest: bytes, message: str
) -> None:
    lay_out(nginx.www, b"x", manifest=manifest)
    assert message in await error_of(tmp_path, reference(nginx), keys)
