"""What a bundle source re-reads while the server runs: the bundle URL, the token (or the
registry's ``user:password``), the trusted public keys and the CA bundle.

Each comes from a file the operator mounts: a Secret or a ConfigMap, which the kubelet
replaces by swapping a ``..data`` symlink, a CronJob refreshing a 12-hour registry
password, a presigned URL re-signed before it expires. Reading them once at start would
leave a pod trusting a key that was removed for being compromised, and polling with a
token that was revoked, until someone restarts it. So :meth:`Credentials.check` compares
each file's stamp (device, inode, size, mtime, through symlinks; for a keyring folder also
its listing) with the last one read, and re-reads only what changed. It does blocking file
I/O: the bundle source runs it in a thread, every second and before each poll.

A value that cannot be used (an unreadable token file, a URL that is no bundle URL, a CA
file that is no PEM) keeps the previous one and is reported. Keys are the exception: the
keyring becomes exactly the keys that load now, so a removed or damaged key is never
trusted a moment longer; an empty keyring refuses every bundle.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from server.bundle.signing import Keyring, SignatureError, key_paths

Kind = Literal["url", "token", "keys", "ca"]
KINDS: tuple[Kind, ...] = ("url", "token", "keys", "ca")
MAX_SECRET_FILE = 64 * 1024

Stamp = tuple[tuple[object, ...], ...]


@dataclass(frozen=True, slots=True)
class Sources:
    """The files behind each value; None or empty: the value is fixed at start."""

    url_file: Path | None = None
    token_file: Path | None = None
    key_files: tuple[Path, ...] = ()
    keyring_dir: Path | None = None
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """One value that changed. ``ok`` False: its files changed but the new content cannot
    be used (``detail`` says why, never quoting a secret) and the previous value stays."""

    what: Kind
    ok: bool
    detail: str
    value: object = None


def _stamp_paths(paths: Iterable[Path]) -> Stamp:
    out: list[tuple[object, ...]] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as exc:
            out.append((str(p), "missing", exc.errno))
            continue
        out.append((str(p), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _read_small(path: Path, what: str) -> str:
    """A secret file's text, stripped; raises ValueError saying why it cannot be read."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if len(raw) > MAX_SECRET_FILE:
        raise ValueError(f"the {what} file {path} is larger than {MAX_SECRET_FILE} bytes")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"the {what} file {path} is not UTF-8 text") from None


def check_ca(path: Path) -> None:
    """Raise ValueError when ``path`` is no usable CA bundle."""
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"the CA file {path} cannot be used: {exc}") from None


@dataclass
class Credentials:
    """The current URL, token, keyring and CA file, and the stamps they were read at."""

    sources: Sources
    url: str
    token: str = ""
    keyring: Keyring | None = None
    ca_file: Path | None = None
    # Checks a URL read from its file (the same checks as at start); raises ValueError.
    check_url: Callable[[str], None] | None = None
    _stamps: dict[Kind, Stamp] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in KINDS:
            self._stamps[kind] = self._stamp(kind)
        # The URL and token as their files hold them now (start-up checked they can be
        # read; the values given stay if that changed since).
        for kind in ("url", "token"):
            if self.watches(kind):
                update = self._read(kind)
                if update.ok:
                    self.apply(update)

    def _stamp(self, kind: Kind) -> Stamp:
        s = self.sources
        if kind == "url":
            return _stamp_paths([s.url_file] if s.url_file else [])
        if kind == "token":
            return _stamp_paths([s.token_file] if s.token_file else [])
        if kind == "ca":
            return _stamp_paths([s.ca_file] if s.ca_file else [])
        if not s.key_files and s.keyring_dir is None:
            return ()
        try:
            paths = key_paths(s.key_files, s.keyring_dir)
        except SignatureError as exc:
            return (("keyring", str(exc)),)
        # The listing as well as each file: a key added or removed changes the set.
        return (("listing", *sorted(str(p) for p in paths)), *_stamp_paths(paths))

    def watches(self, kind: Kind) -> bool:
        s = self.sources
        return {
            "url": s.url_file is not None,
            "token": s.token_file is not None,
            "keys": bool(s.key_files) or s.keyring_dir is not None,
            "ca": s.ca_file is not None,
        }[kind]

    def check(self) -> list[Update]:
        """Re-read what changed since the last check (blocking file I/O). The updates are
        applied to this object by :meth:`apply` (on the event loop)."""
        updates: list[Update] = []
        for kind in KINDS:
            if not self.watches(kind):
                continue
            stamp = self._stamp(kind)
            if stamp == self._stamps[kind]:
                continue
            self._stamps[kind] = stamp
            updates.append(self._read(kind))
        return [u for u in updates if not (u.ok and self._same(u))]

    def _same(self, update: Update) -> bool:
        """A file rewritten with the same content (a Secret synced again) is no change."""
        if update.what == "keys":
            assert isinstance(update.value, Keyring)
            return self.keyring is not None and set(update.value.keys) == set(self.keyring.keys)
        if update.what == "ca":
            return False  # the path is the same; its content changed
        return update.value == {"url": self.url, "token": self.token}[update.what]

    def _read(self, kind: Kind) -> Update:
        s = self.sources
        try:
            if kind == "url":
                assert s.url_file is not None
                url = _read_small(s.url_file, "bundle URL")
                if self.check_url is not None:
                    self.check_url(url)
                return Update("url", True, "the bundle URL changed", url)
            if kind == "token":
                assert s.token_file is not None
                token = _read_small(s.token_file, "bundle token")
                return Update("token", True, "the bundle token changed", token)
            if kind == "ca":
                assert s.ca_file is not None
                check_ca(s.ca_file)
                return Update("ca", True, "the bundle server's CA file changed", s.ca_file)
        except ValueError as exc:
            return Update(kind, False, str(exc))
        ring, errors = Keyring.load_available(s.key_files, s.keyring_dir)
        before = set(self.keyring.keys) if self.keyring is not None else set()
        after = set(ring.keys)
        parts = [f"trusted keys now: {', '.join(sorted(after)) or 'none'}"]
        if after - before:
            parts.append(f"added: {', '.join(sorted(after - before))}")
        if before - after:
            parts.append(f"removed: {', '.join(sorted(before - after))}")
        if errors:
            parts.append("not loaded: " + "; ".join(errors)[:500])
        # Applied even with errors: the keys that did load are exactly what is trusted.
        return Update("keys", not errors and bool(after), "; ".join(parts), ring)

    def apply(self, update: Update) -> None:
        if update.what == "keys":
            assert isinstance(update.value, Keyring)
            self.keyring = update.value
        elif not update.ok:
            return
        elif update.what == "url":
            assert isinstance(update.value, str)
            self.url = update.value
        elif update.what == "token":
            assert isinstance(update.value, str)
            self.token = update.value
        elif update.what == "ca":
            assert isinstance(update.value, Path)
            self.ca_file = update.value
