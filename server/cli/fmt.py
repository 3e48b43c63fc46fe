"""``ringfence fmt``: format .rf files in place, or report those that would change."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def policy_files(paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                sorted(
                    f for f in p.rglob("*.rf") if not any(part.startswith("..") for part in f.parts)
                )
            )
        else:
            out.append(p)
    return out


def run_fmt(ns: argparse.Namespace) -> int:
    from dsl import PolicyError
    from dsl.diagnostics import render
    from dsl.formatter import format_source

    status = 0
    for path in policy_files(ns.paths or ["rules"]):
        text = path.read_text(encoding="utf-8")
        try:
            formatted = format_source(text, str(path))
        except PolicyError as exc:
            for d in exc.diagnostics:
                print(render(d, text), file=sys.stderr)
            status = 1
            continue
        if formatted == text:
            continue
        if ns.check:
            print(f"would reformat {path}")
            status = 1
        else:
            path.write_text(formatted, encoding="utf-8")
            print(f"reformatted {path}")
    return status
