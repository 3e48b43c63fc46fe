"""Rotations take effect without a restart: a bearer token the bundle server changed, a
registry password a CronJob refreshed, a signing key added to or removed from the keyring,
a new CA, a new bundle URL. Each file is changed the way the kubelet changes a mounted
Secret or ConfigMap (a ``..data`` symlink swap), against a real nginx or a real registry,
with Evaluate traffic that must never fail meanwhile."""

from __future__ import annotations

import re
from pathlib import Path

import processes
import pytest
from bundle_support import (
    Keys,
    bundle_status,
    holds,
    mount,
    publish,
    reason,
    rules,
    scrape,
    serving,
    traffic_running,
    wait_for,
    wait_revision,
)
from certs import make_pki
from conftest_nginx import NginxServer, NginxUnavailable
from conftest_registry import RegistryServer, RegistryUnavailable
from support import Running

from server.bundle.remote import BundleSource
from server.bundle.signing import generate


def source_of(s: Running) -> BundleSource:
    source = s.server.bundle_source
    assert source is not None
    return source


def reloads(source: BundleSource, what: str, result: str = "ok") -> int:
    return source.status.credential_reloads[(what, result)]


async def test_a_rotated_bearer_token_is_used_without_a_restart(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    secret = tmp_path / "token-secret"
    mount(secret, {"token": b"old-token\n"})
    nginx.restart(token="old-token")
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    url = nginx.url("b.tar.gz", private=True)
    async with serving(tmp_path, url, keys, token_file=secret / "token") as (s, traffic):
        await wait_revision(s, "v1")
        source = source_of(s)
        async with traffic_running(traffic):
            nginx.restart(token="new-token")  # the server revokes the old token
            await wait_for(lambda: holds("HTTP 401" in source.status.last_error))
            mount(secret, {"token": b"new-token\n"})  # the Secret is updated
            await wait_for(lambda: holds(source.status.last_error == ""))
            assert reloads(source, "token") == 1
            publish(nginx.www, rules(tmp_path / "v2", "review", "v2"), keys.key, "v2")
            await wait_revision(s, "v2")
            assert await reason(s) == "v2"
        metrics = await scrape(s)
        assert re.search(
            r'^ringfence_bundle_credential_reloads_total\{.*result="ok",.*what="token"\} 1\.0$',
            metrics,
            re.M,
        )


async def test_a_refreshed_registry_password_is_used_without_a_restart(
    tmp_path: Path, keys: Keys
) -> None:
    """The documented ECR set-up: a CronJob refreshes the registry password in a Secret."""
    work = tmp_path / "registry"
    secret = tmp_path / "pull-secret"
    mount(secret, {"token": b"ci:first-password"})
    tag = "risk/rules:prod"

    def start(password: str, port: int = 0) -> RegistryServer:
        return RegistryServer.start(work, user="ci", password=password, port=port)

    with processes.running(lambda: start("first-password"), RegistryUnavailable) as registry:
        out = tmp_path / "bundles"
        out.mkdir()
        publish(out, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1", "v1.tar.gz")
        registry.push(out / "v1.tar.gz", tag)
        url = registry.reference(tag)
        async with serving(tmp_path, url, keys, token_file=secret / "token") as (s, traffic):
            await wait_revision(s, "v1")
            source = source_of(s)
            async with traffic_running(traffic):
                registry.stop()  # the password expires: the registry wants the new one
                registry = start("second-password", port=registry.port)
                try:
                    await wait_for(lambda: holds("HTTP 401" in source.status.last_error))
                    mount(secret, {"token": b"ci:second-password"})
                    await wait_for(lambda: holds(source.status.last_error == ""))
                    publish(
                        out, rules(tmp_path / "v2", "review", "v2"), keys.key, "v2", "v2.tar.gz"
                    )
                    registry.push(out / "v2.tar.gz", tag)
                    await wait_revision(s, "v2")
                finally:
                    registry.stop()
            assert reloads(source, "token") == 1


def key_pair(tmp_path: Path, name: str) -> tuple[Path, bytes]:
    private, public = generate("ed25519")
    (tmp_path / f"{name}.key").write_bytes(private)
    return tmp_path / f"{name}.key", public


async def test_a_key_added_to_the_keyring_is_trusted_at_once(
    tmp_path: Path, nginx: NginxServer
) -> None:
    """CI switched to a new key before the keyring reached the pods: the bundle it signed
    was refused. Once the key is in the keyring that same bundle (same ETag) is fetched
    again and activated, without waiting for anything to be republished."""
    a_key, a_pub = key_pair(tmp_path, "a")
    b_key, b_pub = key_pair(tmp_path, "b")
    keyring = tmp_path / "keyring"
    mount(keyring, {"a.pem": a_pub})
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), a_key, "v1")
    url = nginx.url("b.tar.gz")
    async with serving(tmp_path, url, None, keyring_dir=keyring) as (s, traffic):
        await wait_revision(s, "v1")
        source = source_of(s)
        async with traffic_running(traffic):
            publish(nginx.www, rules(tmp_path / "v2", "review", "v2"), b_key, "v2")
            await wait_for(lambda: holds(source.status.results["rejected"] == 1))
            assert "not trusted" in source.status.last_error
            mount(keyring, {"a.pem": a_pub, "b.pem": b_pub})
            await wait_revision(s, "v2")
            assert await reason(s) == "v2"
        assert reloads(source, "keys") == 1
        assert len(source.status.trusted_keys) == 2


async def test_a_removed_key_is_distrusted_at_once(tmp_path: Path, nginx: NginxServer) -> None:
    """A compromised key is removed: nothing it signs is taken any more, the active bundle
    it signed is reported (status, log, metric) until a trusted bundle replaces it, and
    the policy keeps serving meanwhile."""
    a_key, a_pub = key_pair(tmp_path, "a")
    b_key, b_pub = key_pair(tmp_path, "b")
    keyring = tmp_path / "keyring"
    mount(keyring, {"a.pem": a_pub, "b.pem": b_pub})
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), a_key, "v1")
    url = nginx.url("b.tar.gz")
    async with serving(tmp_path, url, None, keyring_dir=keyring) as (s, traffic):
        await wait_revision(s, "v1")
        source = source_of(s)
        assert re.search(r"^ringfence_bundle_signer_trusted\{.*\} 1\.0$", await scrape(s), re.M)
        async with traffic_running(traffic):
            mount(keyring, {"b.pem": b_pub})
            await wait_for(lambda: holds(not source.status.signer_trusted))
            status = await bundle_status(s)
            assert "no longer trusted" in status.last_error
            assert re.search(r"^ringfence_bundle_signer_trusted\{.*\} 0\.0$", await scrape(s), re.M)
            # Still signed by the removed key: refused.
            publish(nginx.www, rules(tmp_path / "v2", "review", "v2"), a_key, "v2")
            await wait_for(lambda: holds(source.status.results["rejected"] == 1))
            assert await reason(s) == "v1"
            # A bundle from the key that stays replaces it. (Of another size than v2: nginx's
            # ETag is the size and the mtime in whole seconds.)
            publish(nginx.www, rules(tmp_path / "v3", "allow", "v3"), b_key, "v3")
            await wait_revision(s, "v3")
            assert source.status.signer_trusted
            assert (await bundle_status(s)).last_error == ""
        assert re.search(r"^ringfence_bundle_signer_trusted\{.*\} 1\.0$", await scrape(s), re.M)


async def test_a_damaged_key_file_is_not_trusted_and_the_others_stay(
    tmp_path: Path, nginx: NginxServer
) -> None:
    a_key, a_pub = key_pair(tmp_path, "a")
    _, b_pub = key_pair(tmp_path, "b")
    keyring = tmp_path / "keyring"
    mount(keyring, {"a.pem": a_pub, "b.pem": b_pub})
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), a_key, "v1")
    async with serving(tmp_path, nginx.url("b.tar.gz"), None, keyring_dir=keyring) as (s, _):
        await wait_revision(s, "v1")
        source = source_of(s)
        mount(keyring, {"a.pem": a_pub, "b.pem": b"-----BEGIN PUBLIC KEY-----\nbroken\n"})
        await wait_for(lambda: holds(reloads(source, "keys", "error") == 1))
        assert len(source.status.trusted_keys) == 1
        assert source.status.signer_trusted  # signed by a, which still loads


@pytest.fixture
def pki(tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "pki"
    folder.mkdir()
    return make_pki(folder)


async def test_a_new_ca_file_is_used_without_a_restart(tmp_path: Path, keys: Keys, pki) -> None:  # type: ignore[no-untyped-def]
    tls = (pki.server_cert, pki.server_key)

    def start() -> NginxServer:
        return NginxServer.start(tmp_path / "nginx-tls", tmp_path / "www-tls", tls=tls)

    ca = tmp_path / "ca-configmap"
    mount(ca, {"ca.crt": pki.other_ca.read_bytes()})  # the wrong CA first
    with processes.running(start, NginxUnavailable) as nginx:
        publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
        url = nginx.url("b.tar.gz")
        assert url.startswith("https://")
        async with serving(tmp_path, url, keys, ca_file=ca / "ca.crt") as (s, _):
            source = source_of(s)
            await wait_for(lambda: holds("CERTIFICATE_VERIFY_FAILED" in source.status.last_error))
            mount(ca, {"ca.crt": pki.ca.read_bytes()})
            await wait_revision(s, "v1")
            assert reloads(source, "ca") == 1


async def test_a_new_bundle_url_is_followed(tmp_path: Path, nginx: NginxServer, keys: Keys) -> None:
    """A presigned URL re-signed before it expires, or a move to another object."""
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1", "one.tar.gz")
    publish(nginx.www, rules(tmp_path / "v2", "review", "v2"), keys.key, "v2", "two.tar.gz")
    secret = tmp_path / "url-secret"
    mount(secret, {"url": nginx.url("one.tar.gz?X-Amz-Signature=first").encode()})
    url_file = secret / "url"
    async with serving(tmp_path, "", keys, url_file=url_file) as (s, traffic):
        await wait_revision(s, "v1")
        source = source_of(s)
        async with traffic_running(traffic):
            mount(secret, {"url": nginx.url("two.tar.gz?X-Amz-Signature=second").encode()})
            await wait_revision(s, "v2")
        status = await bundle_status(s)
        assert status.source == nginx.url("two.tar.gz")  # never the query
        # A file that holds no bundle URL keeps the last one.
        mount(secret, {"url": b"ftp://elsewhere/b.tar.gz"})
        await wait_for(lambda: holds(reloads(source, "url", "error") == 1))
        assert source.credentials.url.endswith("two.tar.gz?X-Amz-Signature=second")
        assert (await bundle_status(s)).revision == "v2"


async def test_an_unreadable_token_keeps_the_last_one(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    secret = tmp_path / "token-secret"
    mount(secret, {"token": b"bundle-token-for-tests"})
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    url = nginx.url("b.tar.gz", private=True)
    async with serving(tmp_path, url, keys, token_file=secret / "token") as (s, _):
        await wait_revision(s, "v1")
        source = source_of(s)
        mount(secret, {})  # the key vanished from the Secret
        await wait_for(lambda: holds(reloads(source, "token", "error") == 1))
        polls = source.polls
        await wait_for(lambda: holds(source.polls >= polls + 3))
        assert source.status.last_error == ""  # still polling with the last good token
