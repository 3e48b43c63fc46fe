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
from server.bundle.signing import Keyring

log = logging.getLogger("ringfence.bundle")

PART = "download.part"
_AGENT = "ringfence-bundle/1"
EMPTY = "empty"
REV_PREFIX = "rev-"


class FetchError(Exception):
    """The bundle server answered, but not with a bundle."""


def redact(url: str) -> str:
    """The URL without credentials or query (presigned URLs carry secrets there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


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
        self.status = BundleStatus(source=redact(settings.url))
        self._activate = activate
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._sent_etag = ""  # ETag of the last bundle processed (activated or refused)
        self._active_digest = ""  # sha256 of the active archive
        self._serial = 0
        self._failures = 0
        self.polls = 0  # completed polls, for tests and the log
        # An oci:// source: the reference and the registry's credentials (config checked
        # the URL parses).
        self._oci: tuple[oci.OciReference, oci.RegistryAuth] | None = None
        if oci.is_oci(settings.url):
            ref = oci.parse_reference(settings.url)
            self._oci = (ref, oci.RegistryAuth(ref, settings.token))

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
        delay = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.poll_once()
            except Exception:  # the poller must outlive any bug in one poll
                log.exception("bundle poll failed unexpectedly")
            delay = self._next_delay()

    # --- one poll ----------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            s = self.settings
            verify: ssl.SSLContext | bool = True
            if s.ca_file is not None:
                verify = ssl.create_default_context(cafile=str(s.ca_file))
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
                unpack, part, dest, keyring=s.keyring, limits=s.limits
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
        s = self.settings
        headers = {"Accept-Encoding": "identity", "User-Agent": _AGENT}
        if self._sent_etag:
            headers["If-None-Match"] = self._sent_etag
        if s.token:
            headers["Authorization"] = f"Bearer {s.token}"
        async with self._http().stream("GET", s.url, headers=headers) as resp:
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
        self.status.last_error = ""
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
    # httpx messages may quote the URL; never the query (it can hold a presigned secret).
    return text.replace("\n", " ")[:300]


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
