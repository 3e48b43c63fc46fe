"""Reading files of a rules folder without letting one tenant's folder reach anything else.

Everything in a rules folder is untrusted: whoever can write a tenant's folder may plant a
symlink to another tenant's list, to a secret on the pod, or to a FIFO or device that
hangs a read. So every file is read through :func:`read_confined`, which refuses a path
whose real location (symlinks resolved) is outside the folder it must stay in, anything
but a regular file, and anything larger than its cap, all before reading a byte, and
whose messages never quote the file's content or the symlink's target.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Caps on what is read at all; the policy compiler has its own, smaller limits on sources.
MAX_POLICY_FILE = 4 << 20
MAX_CONFIG_FILE = 64 << 10
MAX_LIST_FILE = 512 << 20


class FileRefused(Exception):
    """A file that is not read; the message is safe to show (no content, no target)."""


def real(path: Path) -> Path:
    """The path with every symlink resolved (the path itself when it does not exist)."""
    return Path(os.path.realpath(path))


def within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or inside it; both must already be real paths."""
    return path == folder or path.is_relative_to(folder)


def read_confined(path: Path, *, inside: Path, limit: int, what: str, fence: str) -> bytes:
    """The bytes of ``path``, which must really be a regular file in ``inside`` (a real
    path, which ``fence`` names for people) of at most ``limit`` bytes; otherwise
    FileRefused saying what was wrong with ``what``.

    The check is made on the resolved path, then the file is opened without following a
    last-component symlink and, where ``/proc`` tells, the opened file's own path is
    checked again: a path swapped for a symlink between check and open is refused too.
    """
    target = real(path)
    if not within(target, inside):
        raise FileRefused(f"{what} leads outside {fence} (through a symlink)")
    try:
        before = os.stat(target)
    except FileNotFoundError:
        raise FileRefused(f"{what} not found") from None
    except OSError as exc:
        raise FileRefused(f"cannot read {what}: {exc.strerror}") from None
    if not stat.S_ISREG(before.st_mode):
        raise FileRefused(f"{what} is not a regular file")
    if before.st_size > limit:
        raise FileRefused(f"{what} is {before.st_size} bytes; at most {limit} are read")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        raise FileRefused(f"cannot read {what}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"{what} changed while it was being opened")
        opened = _opened_path(fd)
        if opened is not None and not within(opened, inside):
            raise FileRefused(f"{what} leads outside {fence} (through a symlink)")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FileRefused(f"{what} is larger than {limit} bytes; it is not read")
        return b"".join(chunks)
    except OSError as exc:
        raise FileRefused(f"cannot read {what}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _opened_path(fd: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def confined_dir(path: Path, *, inside: Path, what: str) -> Path:
    """The real path of directory ``path``, which must stay inside ``inside`` (real)."""
    target = real(path)
    if not within(target, inside) or target == inside:
        raise FileRefused(f"{what} leads outside the rules directory (through a symlink)")
    if not target.is_dir():
        raise FileRefused(f"{what} is not a directory")
    return target


def list_files(folder: Path, suffix: str, *, recursive: bool) -> list[Path]:
    """Files named ``*suffix`` in ``folder`` (sorted); subfolder symlinks are not followed.

    Paths are returned as found, not resolved: each is read with :func:`read_confined`,
    which decides whether a symlinked file may be read.
    """
    out: list[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            out.extend(Path(dirpath) / f for f in filenames if f.endswith(suffix))
    else:
        with os.scandir(folder) as it:
            out.extend(Path(e.path) for e in it if e.name.endswith(suffix) and not e.is_dir())
    return sorted(out)
