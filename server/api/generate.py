"""Regenerate the Python gRPC code and typed stubs in this folder from ``protos/``.

``python -m server.api.generate`` rewrites the files; ``--check DIR`` generates into DIR
instead, so a test can compare it with what is committed. Generated modules import each
other relatively, so the API lives inside the ``server`` package instead of claiming a
top-level ``ringfence`` package.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
OUT = Path(__file__).resolve().parent
FILES = ("ringfence/v1/decision.proto", "ringfence/v1/policy.proto")
_IMPORT = re.compile(r"^from ringfence\.v1 import (\w+)", re.MULTILINE)
_PYI_IMPORT = re.compile(r"^import ringfence\.v1\.(\w+)$", re.MULTILINE)
_PYI_REF = re.compile(r"\bringfence\.v1\.(\w+_pb2)\b")


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{PROTOS / 'third_party'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *FILES,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written: list[Path] = []
    nested = out / "ringfence" / "v1"
    for src in sorted(nested.iterdir()):
        text = src.read_text()
        text = _IMPORT.sub(r"from . import \1", text)
        text = _PYI_IMPORT.sub(r"from . import \1", text)
        text = _PYI_REF.sub(r"\1", text)
        dest = out / src.name
        dest.write_text(text)
        written.append(dest)
        src.unlink()
    nested.rmdir()
    (out / "ringfence").rmdir()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", type=Path, help="generate into this folder instead")
    ns = parser.parse_args(argv)
    for path in generate(ns.check or OUT):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
