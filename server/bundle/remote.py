"""Pulling a rules bundle over HTTP(S): ETag polling, a streamed download, verification
and unpacking off the event loop, then activation through the registry's reload.

Each poll sends ``If-None-Match`` with the ETag of the last bundle it processed, so an
unchanged bundle costs one 304. A changed one is streamed to disk in chunks (memory stays
bounded whatever its size), refused past ``max_archive_bytes``, verified and unpacked into a
new directory by :func:`server.bundle.archive.unpack`, and only then handed to
``activate`` (the registry reloads from the new directory and swaps each tenant in one
step). A download that breaks, a bundle that does not verify, a server that answers 500:
the live policy stays as it was, the error is recorded, and the next poll tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import shutil
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from server.bundle import oci
from server.bundle.archive import BundleRejected, Limits, Manifest, unpack
from server.bundle.registry import ReloadOutcome
from server.bundle.rotation import Credentials, Sources, Update
from server.bundle.signing import Keyring
from server.observability.redact import redact_text

log = logging.getLogger("ringfence.bundle")

PART = "download.part"
_AGENT = "ringfence-bundle/1"
EMPTY = "empty"
REV_PREFIX = "rev-"


class FetchError(Exception):
    """The bundle server answered, but not with a bundle."""


# How often the files behind the URL, token, keys and CA are looked at between polls.
WATCH_S = 1.0


def redact(url: str) -> str:
    """The URL without credentials or query (presigned URLs carry secrets there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_url(url: str) -> None:
    """Raise ValueError saying what is wrong when ``url`` is no bundle URL (the message
    never quotes it: it may hold credentials)."""
    if oci.is_oci(url):
        oci.parse_reference(url)
    elif not url.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL, or oci://registry/repository:tag")


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    url: str
    work_dir: Path
    keyring: Keyring | None  # None: unsigned bundles accepted (explicit opt-in)
    poll_s: float = 30.0
    jitter_s: float = 5.0
    timeout_s: float = 300.0
    limits: Limits = field(default_factory=Limits)
    ca_file: Path | None = None
    token: str = ""
    # The files the URL, token, keys and CA come from, re-read when they change.
    sources: Sources = field(default_factory=Sources)
    # Hosts (host or host:port) besides the registry's own whose token service may be
    # asked for a pull token (Docker Hub's auth.docker.io, GitLab's gitlab.com).
    token_realm_hosts: tuple[str, ...] = ()


@dataclass(slots=True)
class BundleStatus:
    """What GetPolicyStatus and the metrics report; written on the event loop only."""

    source: str
    revision: str = ""
    key_id: str = ""
    tenants: tuple[str, ...] = ()
    etag: str = ""
    activated_at: float = 0.0
    last_check_at: float = 0.0
    last_success_at: float = 0.0
    last_error: str = ""
    last_error_at: float = 0.0
    archive_bytes: int = 0
    bytes_received: int = 0  # of the download in progress or the last one
    downloading: bool = False
    results: Counter[str] = field(default_factory=Counter)
    # The longest a poll interval can be (interval + jitter): staleness alerts count these.
    poll_interval_s: float = 0.0
    # Key ids the server trusts now (empty when unsigned bundles are accepted).
    trusted_keys: tuple[str, ...] = ()
    # False while the active bundle's signer is no longer in the keyring.
    signer_trusted: bool = True
    # Re-read URL, token, keys and CA files: (what, "ok" or "error") -> count.
    credential_reloads: Counter[tuple[str, str]] = field(default_factory=Counter)


Activate = Callable[[Path], Awaitable[Sequence[ReloadOutcome]]]


class BundleSource:
    def __init__(
        self,
        settings: RemoteSettings,
        activate: Activate,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = Credentials(
            settings.sources,
            url=settings.url,
            token=settings.token,
            keyring=settings.keyring,
            ca_file=settings.ca_file,
            check_url=check_url,
        )
        self.status = BundleStatus(
            source=redact(self.credentials.url),
            poll_interval_s=settings.poll_s + settings.jitter_s,
            trusted_keys=tuple(sorted(settings.keyring.keys)) if settings.keyring else (),
        )
        self._activate = activate
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_ca: Path | None = None  # the CA file the client was made with
        self._ca_changed = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._sent_etag = ""  # ETag of the last bundle processed (activated or refused)
        self._active_digest = ""  # sha256 of the active archive
        self._serial = 0
        self._failures = 0
        self.polls = 0  # completed polls, for tests and the log
        self._oci: tuple[oci.OciReference, oci.RegistryAuth] | None = None
        self._set_oci()

    def _set_oci(self) -> None:
        """For an oci:// source: the reference and the registry's credentials (the URL
        was checked when it was read)."""
        url = self.credentials.url
        self._oci = None
        if oci.is_oci(url):
            ref = oci.parse_reference(url)
            auth = oci.RegistryAuth(
                ref, self.credentials.token, realm_hosts=self.settings.token_realm_hosts
            )
            self._oci = (ref, auth)

    # --- lifecycle ---------------------------------------------------------------

    def prepare(self) -> Path:
        """Create the work directory, clear what an earlier process left, and return the
        empty directory the registry starts on (no tenant, so not ready)."""
        work = self.settings.work_dir
        work.mkdir(parents=True, exist_ok=True)
        for entry in work.iterdir():
            if entry.name.startswith(REV_PREFIX) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
        (work / PART).unlink(missing_ok=True)
        empty = work / EMPTY
        empty.mkdir(exist_ok=True)
        return empty

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bundle-poller")

    def poll_now(self) -> None:
        """Poll at once instead of at the next interval (SIGHUP, ReloadPolicy)."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    def _next_delay(self) -> float:
        s = self.settings
        base = s.poll_s
        if not self.status.revision and self._failures:
            # Nothing to serve yet: retry sooner (0.5, 1, 2, ... s, capped at the interval).
            base = min(s.poll_s, 0.5 * 2 ** min(self._failures - 1, 10))
        return base + random.uniform(0, s.jitter_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        while not self._stopping:
            # Between polls the credential files are looked at every WATCH_S: a rotated
            # token or a removed key takes effect in about a second, not at the next poll.
            due = loop.time() + delay
            while not self._wake.is_set() and (left := due - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, WATCH_S)):
                        await self._wake.wait()
                if not self._wake.is_set() and not self._stopping:
                    try:
                        await self.check_credentials()
                    except Exception:
                        log.exception("re-reading the bundle credentials failed")
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.poll_once()
            except Exception:  # the poller must outlive any bug in one poll
                log.exception("bundle poll failed unexpectedly")
            delay = self._next_delay()

    # --- one poll ----------------------------------------------------------------

    # --- credentials that change -------------------------------------------------

    async def check_credentials(self) -> list[Update]:
        """Re-read the URL, token, keys and CA files that changed, apply what can be used,
        log and count each change; a change that matters polls at once."""
        updates = await asyncio.to_thread(self.credentials.check)
        for update in updates:
            self._apply(update)
        if any(u.ok or u.what == "keys" for u in updates):
            self._wake.set()
        return updates

    def _apply(self, update: Update) -> None:
        st = self.status
        creds = self.credentials
        creds.apply(update)
        st.credential_reloads[(update.what, "ok" if update.ok else "error")] += 1
        level = logging.INFO if update.ok else logging.ERROR
        message = (
            f"bundle {update.what} re-read"
            if update.ok
            else f"bundle {update.what} changed but cannot be used"
        )
        log.log(level, message, extra={"detail": update.detail, "source": st.source})
        if update.what == "keys":
            keyring = creds.keyring
            st.trusted_keys = tuple(sorted(keyring.keys)) if keyring is not None else ()
            # A bundle refused by the old keyring (signed by a key added only now) must be
            # fetched again: forget the ETag of anything but the active bundle.
            self._sent_etag = st.etag
            self._check_signer()
        elif not update.ok:
            return
        elif update.what == "url":
            st.source = redact(creds.url)
            self._sent_etag = st.etag
            self._set_oci()
        elif update.what == "token":
            self._set_oci()
        elif update.what == "ca":
            self._ca_changed = True

    def _check_signer(self) -> None:
        """Whether the active bundle's signer is still trusted; when it is not, the policy
        keeps serving (taking every tenant down would be worse) but the status, the log and
        ``ringfence_bundle_signer_trusted`` say so until a bundle from a trusted key
        replaces it."""
        st = self.status
        keyring = self.credentials.keyring
        trusted = not st.key_id or keyring is None or st.key_id in keyring.keys
        if not trusted and st.signer_trusted:
            log.error(
                "the active bundle's signing key is no longer trusted; it keeps serving "
                "until a bundle signed by a trusted key replaces it",
                extra={"key_id": st.key_id, "revision": st.revision},
            )
        st.signer_trusted = trusted
        if not trusted:
            st.last_error = self._distrusted()
            st.last_error_at = self._clock()

    def _distrusted(self) -> str:
        st = self.status
        return (
            f"revision {st.revision} is signed by key {st.key_id}, which is no longer trusted:"
            " publish a bundle signed by a trusted key"
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            ca_file = self.credentials.ca_file
            verify: ssl.SSLContext | bool = True
            if ca_file is not None:
                verify = ssl.create_default_context(cafile=str(ca_file))
            self._client_ca = ca_file
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=10.0),
                follow_redirects=True,
                max_redirects=5,
                verify=verify,
                transport=self._transport,
                # HTTPS_PROXY / NO_PROXY apply, as for any client in the cluster.
                trust_env=True,
            )
        return self._client

    async def poll_once(self) -> str:
        """One check: "not_modified", "unchanged", "updated", "error" or "rejected"."""
        await self.check_credentials()
        if self._ca_changed and self._client is not None:
            # A new CA: a new client (connections made under the old one are closed).
            self._ca_changed = False
            old, self._client = self._client, None
            await old.aclose()
        st = self.status
        st.last_check_at = self._clock()
        work = self.settings.work_dir
        part = work / PART
        try:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    fetched = await self._download(part)
            except BaseException:
                part.unlink(missing_ok=True)  # half a download is never looked at again
                raise
        except TimeoutError:
            return self._failed("error", f"download took longer than {self.settings.timeout_s} s")
        except (httpx.HTTPError, OSError, FetchError, oci.OciError) as exc:
            return self._failed("error", f"download failed: {_describe(exc)}")
        finally:
            st.downloading = False
        if fetched is None:
            if self._sent_etag == st.etag:
                # The active bundle is current. (A 304 for a refused bundle's ETag is not
                # a success: its error stays until something new is published.)
                self._current()
            return self._done("not_modified")
        etag, digest = fetched
        if digest == self._active_digest:
            part.unlink(missing_ok=True)
            self._sent_etag = st.etag = etag
            self._current()
            return self._done("unchanged")
        self._serial += 1
        dest = work / f"{REV_PREFIX}{self._serial:06d}"
        s = self.settings
        try:
            unpacked = await asyncio.to_thread(
                unpack, part, dest, keyring=self.credentials.keyring, limits=s.limits
            )
        except BundleRejected as exc:
            # The same bytes would be refused again: do not fetch them until they change.
            self._sent_etag = etag
            return self._failed("rejected", f"bundle refused: {exc}")
        except OSError as exc:
            return self._failed("error", f"cannot unpack the bundle: {_describe(exc)}")
        finally:
            part.unlink(missing_ok=True)
        outcomes = await self._activate(dest)
        self._after_activation(unpacked.manifest, unpacked.key_id, etag, digest, outcomes)
        self._cleanup(keep=dest)
        return self._done("updated")

    async def _download(self, part: Path) -> tuple[str, str] | None:
        """Stream the bundle to ``part``: (etag, sha256), or None on 304 Not Modified."""
        if self._oci is not None:
            return await self._download_oci(part, *self._oci)
        creds = self.credentials
        headers = {"Accept-Encoding": "identity", "User-Agent": _AGENT}
        if self._sent_etag:
            headers["If-None-Match"] = self._sent_etag
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        async with self._http().stream("GET", creds.url, headers=headers) as resp:
            if resp.status_code == 304:
                return None
            if resp.status_code != 200:
                raise FetchError(f"HTTP {resp.status_code} from {self.status.source}")
            return resp.headers.get("etag", ""), await self._save(resp, part)

    async def _download_oci(
        self, part: Path, ref: oci.OciReference, auth: oci.RegistryAuth
    ) -> tuple[str, str] | None:
        """The artifact's bundle layer to ``part``: (manifest digest, sha256), or None when
        the manifest has not changed since the last one processed."""
        client = self._http()
        layer = await oci.resolve(client, auth, ref, self._sent_etag)
        if layer is None:
            return None
        limit = self.settings.limits.max_archive_bytes
        if layer.size > limit:
            raise FetchError(f"bundle is {layer.size} bytes, more than the limit {limit}")
        headers = {"Accept-Encoding": "identity", "User-Agent": _AGENT}
        resp = await oci.get(client, auth, f"{ref.base}/blobs/{layer.digest}", headers, stream=True)
        try:
            if resp.status_code != 200:
                raise FetchError(f"HTTP {resp.status_code} for the bundle layer of {ref}")
            digest = await self._save(resp, part)
        finally:
            await resp.aclose()
        if f"sha256:{digest}" != layer.digest:
            raise FetchError(f"the bundle layer's content does not match its digest {layer.digest}")
        return layer.manifest_digest, digest

    async def _save(self, resp: httpx.Response, part: Path) -> str:
        """Stream a response body to ``part`` within the archive limit; its sha256."""
        st = self.status
        limit = self.settings.limits.max_archive_bytes
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise FetchError(f"bundle is {length} bytes, more than the limit {limit}")
        st.downloading = True
        st.bytes_received = 0
        digest = hashlib.sha256()
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            # Raw bytes: a Content-Encoding is not undone here, so no decompression
            # happens before the bounded, checked one in unpack().
            async for chunk in resp.aiter_raw(64 * 1024):
                st.bytes_received += len(chunk)
                if st.bytes_received > limit:
                    raise FetchError(f"bundle exceeds the limit of {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    def _after_activation(
        self,
        manifest: Manifest,
        key_id: str,
        etag: str,
        digest: str,
        outcomes: Sequence[ReloadOutcome],
    ) -> None:
        st = self.status
        now = self._clock()
        st.revision, st.key_id, st.tenants = manifest.revision, key_id, manifest.tenants
        st.etag = self._sent_etag = etag
        st.activated_at = st.last_success_at = now
        st.archive_bytes = st.bytes_received
        st.signer_trusted = True  # verified against the keyring of this very poll
        self._active_digest = digest
        self._failures = 0
        failed = sorted(o.tenant for o in outcomes if not o.ok)
        if failed:
            st.last_error = (
                f"revision {manifest.revision}: tenant(s) {', '.join(failed)} did not load "
                "and keep their last good policy (see each tenant's last_error)"
            )
            st.last_error_at = now
            log.error(
                "bundle activated with failing tenants",
                extra={"revision": manifest.revision, "failed": failed},
            )
        else:
            st.last_error = ""
        log.info(
            "bundle activated",
            extra={
                "revision": manifest.revision,
                "tenants": list(manifest.tenants),
                "bytes": st.archive_bytes,
                "key_id": key_id,
            },
        )

    def _current(self) -> None:
        self.status.last_success_at = self._clock()
        self.status.last_error = "" if self.status.signer_trusted else self._distrusted()
        self._failures = 0

    def _cleanup(self, keep: Path) -> None:
        # Loaded policies and lists live in memory: older directories are not needed.
        for entry in self.settings.work_dir.iterdir():
            if entry.name.startswith(REV_PREFIX) and entry != keep and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def _failed(self, result: str, message: str) -> str:
        st = self.status
        st.last_error, st.last_error_at = message, self._clock()
        self._failures += 1
        log.error(
            "bundle not activated; the live policy stays",
            extra={"error": message, "revision": st.revision, "source": st.source},
        )
        return self._done(result)

    def _done(self, result: str) -> str:
        self.status.results[result] += 1
        self.polls += 1
        return result


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # httpx messages may quote the URL: never its credentials or query (a presigned secret).
    return redact_text(text.replace("\n", " "))[:300]


def register_metrics(meter: Any, status: BundleStatus) -> None:
    """Observable metrics read from ``status`` at scrape time."""
    from opentelemetry.metrics import Observation

    def revision(_options: Any) -> list[Observation]:
        if not status.revision:
            return []
        return [Observation(1, {"revision": status.revision, "key_id": status.key_id})]

    def stamp(attr: str) -> Callable[[Any], list[Observation]]:
        return lambda _options: [Observation(getattr(status, attr))]

    def results(_options: Any) -> list[Observation]:
        return [Observation(n, {"result": r}) for r, n in list(status.results.items())]

    meter.create_observable_gauge(
        "ringfence_bundle_info", callbacks=[revision], description="Active bundle revision"
    )
    meter.create_observable_gauge(
        "ringfence_bundle_last_success_timestamp_seconds",
        callbacks=[stamp("last_success_at")],
        description="Last poll that found the active bundle current (or activated a new one)",
    )
    meter.create_observable_gauge(
        "ringfence_bundle_activated_timestamp_seconds",
        callbacks=[stamp("activated_at")],
        description="When the active bundle was activated",
    )
    meter.create_observable_gauge(
        "ringfence_bundle_last_error_timestamp_seconds",
        callbacks=[stamp("last_error_at")],
        description="Last failed poll (download, verification or activation); 0: none",
    )
    meter.create_observable_gauge(
        "ringfence_bundle_bytes",
        callbacks=[stamp("archive_bytes")],
        description="Size of the active bundle archive",
    )
    meter.create_observable_counter(
        "ringfence_bundle_polls",
        callbacks=[results],
        description="Bundle polls by result (updated, not_modified, unchanged, error, rejected)",
    )

    def reloads(_options: Any) -> list[Observation]:
        return [
            Observation(n, {"what": what, "result": result})
            for (what, result), n in list(status.credential_reloads.items())
        ]

    def signer(_options: Any) -> list[Observation]:
        if not status.revision or not status.key_id:
            return []
        return [Observation(int(status.signer_trusted), {"key_id": status.key_id})]

    meter.create_observable_counter(
        "ringfence_bundle_credential_reloads",
        callbacks=[reloads],
        description="Bundle URL, token, key and CA files re-read after a change, by what and "
        "result (ok, or error: the previous value stays; for keys, some did not load)",
    )
    meter.create_observable_gauge(
        "ringfence_bundle_trusted_keys",
        callbacks=[lambda _options: [Observation(len(status.trusted_keys))]],
        description="Public keys bundles may be signed with now (0 with unsigned bundles)",
    )
    meter.create_observable_gauge(
        "ringfence_bundle_signer_trusted",
        callbacks=[signer],
        description="1 while the active bundle's signing key is trusted; 0 once it was removed",
    )
    meter.create_observable_gauge(
        "ringfence_bundle_poll_interval_seconds",
        callbacks=[stamp("poll_interval_s")],
        description="The longest time between two polls (interval plus jitter)",
    )
