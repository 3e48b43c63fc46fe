"""Parsing big lists in a process of their own, so a reload never stalls the server.

A reload already builds off the event loop, in a thread; but a thread shares the
interpreter lock, and parsing a million-line list holds it in long stretches the event
loop cannot interrupt (decoding the file, splitting it into lines: ~120 ms of C calls for
1,000,000 entries, with stalls of 180-240 ms measured). So a list past ``threshold`` bytes
is parsed in a short-lived child process: the server thread only writes the bytes down a
pipe and receives the finished :class:`ListIndex`, whose pickle is two flat arrays (a copy,
a few milliseconds). The child exits after each list, so the memory the parse needed is
given back at once. Small lists are parsed in place, where a process would cost more than
it saves.

Thread-safe; :meth:`parse` blocks its caller (a reload's build thread), never the loop.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from array import array
from dataclasses import dataclass
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path

from server.lists.index import ListIndex
from server.lists.loader import ListIssue, ListLoadError, parse_list
from server.phone import PhoneParser

# Below this, parsing in place costs less than starting a process (1 MiB is ~20,000 lines).
THRESHOLD = 1 << 20


def _child_main(
    conn: Connection,
    where: str,
    name: str,
    default_region: str,
    segments: str | None,
    today: date | None,
) -> None:
    # A reload is background work: Evaluate keeps the first claim on the CPU.
    with contextlib.suppress(OSError):
        os.nice(10)
    from server.phone import SegmentTable

    raw = conn.recv_bytes()
    parser = PhoneParser(SegmentTable.load(segments), cache_size=0)
    try:
        index = parse_list(
            raw, where, name=name, default_region=default_region, parser=parser, today=today
        )
    except ListLoadError as exc:
        # The issues, not the exception: it pickles as its message only.
        conn.send(("error", exc.issues))
        conn.close()
        return
    del raw
    state, numbers, labels = index.parts()
    conn.send(("ok", state))
    _send_array(conn, numbers)
    _send_array(conn, labels)
    conn.close()


# The big arrays cross in pieces: receiving a 16 MB pickle is a few copies of 16 MB in a
# row with the interpreter held; pieces of 1 MiB let the event loop in between.
CHUNK = 1 << 20


def _send_array(conn: Connection, values: array[int]) -> None:
    raw = memoryview(values).cast("B")
    pieces = [raw[i : i + CHUNK] for i in range(0, len(raw), CHUNK)]
    conn.send((values.typecode, len(pieces)))
    for piece in pieces:
        conn.send_bytes(piece)


def _recv_array(conn: Connection) -> array[int]:
    typecode, count = conn.recv()
    values: array[int] = array(typecode)
    for _ in range(count):
        values.frombytes(conn.recv_bytes())
    return values


@dataclass(eq=False)
class ListPool:
    """``segments``: the server's CN segment table (``--segments``), which the child
    needs for national-format entries exactly as the server would parse them."""

    segments: Path | None = None
    threshold: int = THRESHOLD
    start_method: str = "forkserver"
    parsed_in_child: int = 0  # for tests and the log

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    def parse(
        self,
        raw: bytes,
        where: str,
        *,
        name: str,
        default_region: str,
        parser: PhoneParser,
        today: date | None = None,
    ) -> ListIndex:
        """:func:`parse_list`, in a child process for big lists; raises ListLoadError."""
        if len(raw) < self.threshold:
            return parse_list(
                raw, where, name=name, default_region=default_region, parser=parser, today=today
            )
        segments = str(self.segments) if self.segments is not None else None
        with self._lock:
            if self._closed:
                raise RuntimeError("the list pool is shut down")
        ctx = multiprocessing.get_context(self.start_method)
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(  # type: ignore[attr-defined]
            target=_child_main,
            args=(theirs, where, name, default_region, segments, today),
            name=f"list-{name}",
            daemon=True,
        )
        proc.start()
        theirs.close()
        try:
            # The bytes go down a pipe in writes that release the interpreter: no single
            # copy of the whole file (a pickle of it would be one).
            ours.send_bytes(raw)
            status, value = ours.recv()
            if status == "ok":
                numbers = _recv_array(ours)
                labels = _recv_array(ours)
                value = ListIndex.from_parts(value, numbers, labels)
        except (EOFError, OSError) as exc:
            proc.join(5)
            raise ListLoadError(
                (ListIssue(where, 0, f"the list parser process died ({proc.exitcode}): {exc}"),)
            ) from None
        finally:
            ours.close()
        proc.join(30)
        with self._lock:
            self.parsed_in_child += 1
        if status == "error":
            assert isinstance(value, tuple)
            raise ListLoadError(value)
        assert isinstance(value, ListIndex)
        return value

    def close(self) -> None:
        with self._lock:
            self._closed = True
