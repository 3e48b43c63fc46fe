"""The checking process: runs the checker for the language server, one request at a time.

Checking a policy is CPU work whose cost the policy's author controls (constants can be
made huge, ``sustained`` multiplies aggregates), so it never runs in the server's own
process: the server sends a request here and, when no answer comes within its time budget,
kills this process and starts another. Memory is capped with RLIMIT_AS for the same
reason. Frames on stdin/stdout are a 4-byte big-endian length and a pickle; only the
language server, which started this process, writes to it.
"""

from __future__ import annotations

import pickle
import resource
import struct
import sys
from dataclasses import dataclass
from typing import BinaryIO

from dsl import CompileOptions, check_policy
from dsl.diagnostics import Diagnostic
from server.lsp.chunks import ChunkCache

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True, slots=True)
class CheckRequest:
    tenant: str
    sources: dict[str, str]
    library: dict[str, str]
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class CheckReply:
    diagnostics: tuple[Diagnostic, ...] = ()
    failure: str = ""  # set when the checker itself failed (out of memory, a bug)


def encode_frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def decode_frame(data: bytes) -> object:
    return pickle.loads(data)  # frames come only from our own worker / our own server


def write_frame(out: BinaryIO, obj: object) -> None:
    out.write(encode_frame(obj))
    out.flush()


def read_frame(src: BinaryIO) -> object | None:
    head = src.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = src.read(size)
    if len(data) < size:
        return None
    return decode_frame(data)


def check(cache: ChunkCache, req: CheckRequest) -> CheckReply:
    try:
        options = CompileOptions(default_timezone=req.timezone or "UTC")
        diags = check_policy(
            req.sources,
            library=req.library,
            tenant=req.tenant,
            options=options,
            parser=cache.module_parser(),
        )
        real = sorted({cache.real(d) for d in diags}, key=Diagnostic.sort_key)
        return CheckReply(tuple(real))
    except MemoryError:
        return CheckReply(failure="checking this policy ran out of memory")
    except RecursionError:
        return CheckReply(failure="checking this policy nested too deeply")
    except Exception as exc:  # a checker bug: report it, keep serving the next request
        return CheckReply(failure=f"internal error while checking: {exc!r}")


def main(argv: list[str]) -> int:
    memory_mb = int(argv[0]) if argv else 0
    if memory_mb > 0:
        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    src, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the frames
    cache = ChunkCache(with_symbols=False)
    while True:
        req = read_frame(src)
        if not isinstance(req, CheckRequest):
            return 0
        try:
            write_frame(out, check(cache, req))
        except BrokenPipeError:  # the server went away (or killed us): nothing to answer
            return 0


if __name__ == "__main__":
    # Run main() from the imported module, not __main__, so the classes the server pickles
    # (server.lsp.worker.CheckRequest) are the ones isinstance() sees here.
    from server.lsp import worker

    sys.exit(worker.main(sys.argv[1:]))
