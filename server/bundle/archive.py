"""Distribution bundles: a rules directory as one gzipped tar with a manifest, optionally
signed; and the checked, streaming unpack a server does before it loads one.

Layout of ``bundle.tar.gz`` (members in this order)::

    .manifest.json    {"format", "revision", "created", "tenants", "files": {path: {sha256, size}}}
    .signature.json   {"alg": "EdDSA"|"ES256", "kid", "signature"} over the manifest's bytes
    _shared/...       every other member: a regular file named in the manifest
    <tenant>/...

An archive from the network is hostile until proven otherwise, so :func:`unpack` reads it as
a stream, never holding more than a chunk in memory, and refuses before writing anything
outside the manifest: members that are not regular files (symlinks, hard links, devices,
FIFOs), absolute or ``..`` paths and odd names, duplicates, files missing from or absent in
the manifest, sizes or hashes that differ from it, too many files, and more decompressed
bytes than the manifest accounts for (a decompression bomb stops at the declared size).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, BinaryIO

from server.bundle.load import is_tenant_dir
from server.bundle.signing import Keyring, PrivateKey, SignatureError, sign, verify
from server.bundle.tenant_config import TENANT_NAME

MANIFEST = ".manifest.json"
SIGNATURE = ".signature.json"
FORMAT = "ringfence-bundle/1"
CHUNK = 64 * 1024
# A name component: what the chart's schema allows for rule files, no dot-files.
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
# Tar headers, padding and the end-of-archive blocks around each member, and tarfile's
# read-ahead: what a stream may decompress beyond the manifest's sizes.
_PER_MEMBER_OVERHEAD = 3 * 512 + 512
_STREAM_SLACK = 64 * 1024


class BundleRejected(ValueError):
    """Why an archive is refused; nothing of it was activated."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_archive_bytes: int = 256 << 20
    max_unpacked_bytes: int = 1 << 30
    max_files: int = 10_000
    max_manifest_bytes: int = 8 << 20


@dataclass(frozen=True, slots=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    revision: str
    created: str
    tenants: tuple[str, ...]
    files: Mapping[str, FileEntry]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "revision": self.revision,
            "created": self.created,
            "tenants": list(self.tenants),
            "files": {
                p: {"sha256": f.sha256, "size": f.size} for p, f in sorted(self.files.items())
            },
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Unpacked:
    manifest: Manifest
    directory: Path
    key_id: str  # "" when unsigned


def check_path(name: str) -> str:
    """``name`` when it is a safe relative path inside the bundle, else BundleRejected."""
    if not name or len(name) > 1024 or "\\" in name or "\0" in name:
        raise BundleRejected(f"bad member name {name[:80]!r}")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise BundleRejected(f"absolute path {name[:80]!r}")
    parts = name.split("/")
    if ".." in parts:
        raise BundleRejected(f"path {name[:80]!r} leaves the bundle")
    if len(parts) > 8 or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise BundleRejected(f"bad member name {name[:80]!r}: use [A-Za-z0-9_][A-Za-z0-9_.-]*")
    return name


# --- building ------------------------------------------------------------------------


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in dirnames:
            if (here / d).is_symlink():
                raise BundleRejected(f"{here / d}: symlinks cannot go into a bundle")
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


def _hash_file(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(digest.hexdigest(), size)


def manifest_for(root: Path, revision: str = "", created: str = "") -> Manifest:
    """The manifest of a rules directory: every regular file not starting with a dot."""
    if not root.is_dir():
        raise BundleRejected(f"rules directory not found: {root}")
    files: dict[str, FileEntry] = {}
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file():
            raise BundleRejected(f"{path}: only regular files can go into a bundle")
        files[check_path(rel)] = _hash_file(path)
    tenants = tuple(
        p.name for p in sorted(root.iterdir()) if is_tenant_dir(p) and TENANT_NAME.fullmatch(p.name)
    )
    if not tenants:
        raise BundleRejected(f"{root}: no tenant folders")
    if not revision:
        # Same content, same revision: a content hash unless the caller names one (git SHA).
        digest = hashlib.sha256()
        for rel, entry in sorted(files.items()):
            digest.update(f"{rel}\0{entry.sha256}\0".encode())
        revision = digest.hexdigest()[:16]
    if not _REVISION.fullmatch(revision):
        raise BundleRejected(f"bad revision {revision!r}: use [A-Za-z0-9._:+-], at most 128")
    if not created:
        # SOURCE_DATE_EPOCH (reproducible builds): the same rules then give the same bytes.
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
        when = (
            dt.datetime.fromtimestamp(int(epoch), dt.UTC)
            if epoch.isdigit()
            else dt.datetime.now(dt.UTC)
        )
        created = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Manifest(revision, created, tenants, MappingProxyType(files))


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    # Fixed owner, mode and time: the same rules give the same bytes.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = ""
    return info


def build(root: Path, out: BinaryIO, *, manifest: Manifest, key: PrivateKey | None) -> None:
    """Write the bundle of ``root`` described by ``manifest`` to ``out``."""
    body = manifest.to_json()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_tar_info(MANIFEST, len(body)), io.BytesIO(body))
        if key is not None:
            sig = sign(body, key)
            tar.addfile(_tar_info(SIGNATURE, len(sig)), io.BytesIO(sig))
        for rel, entry in sorted(manifest.files.items()):
            with (root / rel).open("rb") as fh:
                tar.addfile(_tar_info(rel, entry.size), fh)


# --- reading -------------------------------------------------------------------------


class _BoundedReader(io.RawIOBase):
    """Decompressed bytes with a ceiling that can be lowered once the manifest is known."""

    def __init__(self, inner: gzip.GzipFile, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        room = self.limit - self.count
        if room <= 0:
            raise BundleRejected(
                f"archive decompresses to more than {self.limit} bytes (its manifest accounts "
                "for less): refused as a decompression bomb"
            )
        view = memoryview(buffer)[: min(len(buffer), room)]
        data = self.inner.read(len(view))
        view[: len(data)] = data
        self.count += len(data)
        return len(data)


def parse_manifest(data: bytes, limits: Limits) -> Manifest:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BundleRejected("manifest: not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleRejected(f"manifest: format must be {FORMAT!r}")
    revision, created = doc.get("revision"), doc.get("created", "")
    tenants, files = doc.get("tenants"), doc.get("files")
    if not isinstance(revision, str) or not _REVISION.fullmatch(revision):
        raise BundleRejected("manifest: bad revision")
    if not isinstance(created, str) or len(created) > 64:
        raise BundleRejected("manifest: bad created")
    if not isinstance(tenants, list) or not all(
        isinstance(t, str) and TENANT_NAME.fullmatch(t) for t in tenants
    ):
        raise BundleRejected("manifest: tenants must be a list of tenant names")
    if not isinstance(files, dict):
        raise BundleRejected("manifest: files must be an object")
    if len(files) > limits.max_files:
        raise BundleRejected(f"manifest: {len(files)} files, more than {limits.max_files}")
    entries: dict[str, FileEntry] = {}
    for name, meta in files.items():
        check_path(name)
        if name in (MANIFEST, SIGNATURE):
            raise BundleRejected(f"manifest: {name} cannot be a file")
        if not isinstance(meta, dict) or set(meta) != {"sha256", "size"}:
            raise BundleRejected(f"manifest: {name}: expected sha256 and size")
        sha, size = meta["sha256"], meta["size"]
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise BundleRejected(f"manifest: {name}: bad sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleRejected(f"manifest: {name}: bad size")
        entries[name] = FileEntry(sha, size)
    for name in entries:
        # A file may not also be a folder: "t/a" and "t/a/b" cannot both be unpacked.
        parts = name.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in entries:
                raise BundleRejected(f"manifest: {folder} is a file and also a folder of {name}")
    manifest = Manifest(revision, created, tuple(tenants), MappingProxyType(entries))
    if manifest.total_bytes > limits.max_unpacked_bytes:
        raise BundleRejected(
            f"manifest: {manifest.total_bytes} bytes unpacked, more than "
            f"{limits.max_unpacked_bytes}"
        )
    tops = {name.split("/", 1)[0] for name in entries if "/" in name}
    listed = set(manifest.tenants)
    if not listed:
        raise BundleRejected("manifest: no tenants")
    strays = tops - listed - {"_shared"}
    if strays or listed - tops:
        raise BundleRejected(
            "manifest: tenants do not match the folders "
            f"(unlisted: {sorted(strays)}, empty: {sorted(listed - tops)})"
        )
    return manifest


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, what: str) -> bytes:
    if not member.isreg():
        raise BundleRejected(f"{what} is not a regular file")
    if member.size > limit:
        raise BundleRejected(f"{what} is larger than {limit} bytes")
    fh = tar.extractfile(member)
    assert fh is not None
    return fh.read()


def _copy_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, entry: FileEntry, target: Path
) -> None:
    fh = tar.extractfile(member)
    assert fh is not None
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL|O_NOFOLLOW: never through a link, never over a file written before.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := fh.read(CHUNK):
            written += len(chunk)
            if written > entry.size:
                break
            digest.update(chunk)
            out.write(chunk)
    if written != entry.size:
        raise BundleRejected(f"{member.name}: {written} bytes, manifest says {entry.size}")
    if digest.hexdigest() != entry.sha256:
        raise BundleRejected(f"{member.name}: sha256 does not match the manifest")


def unpack(
    archive: Path, dest: Path, *, keyring: Keyring | None, limits: Limits = Limits()
) -> Unpacked:
    """Verify ``archive`` and write its files under ``dest`` (which must not exist).

    With a keyring the manifest must carry a signature by one of its keys; without one
    (``--bundle-allow-unsigned``) a signature, if present, is ignored. On any refusal
    ``dest`` is removed and BundleRejected says why.
    """
    size = archive.stat().st_size
    if size > limits.max_archive_bytes:
        raise BundleRejected(f"archive is {size} bytes, more than {limits.max_archive_bytes}")
    dest.mkdir(parents=False, exist_ok=False)
    try:
        return _unpack(archive, dest, keyring, limits)
    except _CORRUPT as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise BundleRejected(f"corrupt archive: {exc}") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


# What a damaged or foreign file makes the gzip and tar readers raise.
_CORRUPT = (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error)


def _unpack(archive: Path, dest: Path, keyring: Keyring | None, limits: Limits) -> Unpacked:
    with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        bounded = _BoundedReader(gz, limits.max_manifest_bytes + _STREAM_SLACK)
        stream = io.BufferedReader(bounded, buffer_size=CHUNK)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            members = iter(tar)
            first = next(members, None)
            if first is None or first.name != MANIFEST:
                raise BundleRejected(f"the first member must be {MANIFEST}")
            body = _read_member(tar, first, limits.max_manifest_bytes, MANIFEST)
            manifest = parse_manifest(body, limits)
            # From here on the manifest bounds everything the stream may still produce.
            bounded.limit = (
                bounded.count
                + manifest.total_bytes
                + (len(manifest.files) + 2) * _PER_MEMBER_OVERHEAD
                + _STREAM_SLACK
            )
            member = next(members, None)
            kid = ""
            if member is not None and member.name == SIGNATURE:
                sig = _read_member(tar, member, 64 * 1024, SIGNATURE)
                if keyring is not None:
                    try:
                        kid = verify(body, sig, keyring)
                    except SignatureError as exc:
                        raise BundleRejected(str(exc)) from None
                member = next(members, None)
            elif keyring is not None:
                raise BundleRejected("the bundle is not signed, and a signature is required")
            seen: set[str] = set()
            while member is not None:
                name = check_path(member.name)
                if not member.isreg():
                    raise BundleRejected(f"{name}: not a regular file (links, devices refused)")
                entry = manifest.files.get(name)
                if entry is None:
                    raise BundleRejected(f"{name}: not in the manifest")
                if name in seen:
                    raise BundleRejected(f"{name}: appears twice")
                seen.add(name)
                if member.size != entry.size:
                    raise BundleRejected(f"{name}: {member.size} bytes, manifest says {entry.size}")
                _copy_member(tar, member, entry, dest / name)
                member = next(members, None)
            missing = set(manifest.files) - seen
            if missing:
                raise BundleRejected(
                    f"files in the manifest but not in the archive: {sorted(missing)[:5]}"
                )
    return Unpacked(manifest, dest, kid)


def read_manifest(archive: Path, limits: Limits = Limits()) -> Manifest:
    """Only the manifest (for ``ringfence bundle inspect``); nothing is verified."""
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            bounded = _BoundedReader(gz, limits.max_manifest_bytes + _STREAM_SLACK)
            with tarfile.open(fileobj=io.BufferedReader(bounded), mode="r|") as tar:
                first = next(iter(tar), None)
                if first is None or first.name != MANIFEST:
                    raise BundleRejected(f"the first member must be {MANIFEST}")
                return parse_manifest(
                    _read_member(tar, first, limits.max_manifest_bytes, MANIFEST), limits
                )
    except _CORRUPT as exc:
        raise BundleRejected(f"corrupt archive: {exc}") from None
