"""The committed generated code must be exactly what the protos generate today."""

from __future__ import annotations

import os
from pathlib import Path

from server.api import generate


def test_generated_code_is_current(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")
    fresh = generate.generate(tmp_path)
    assert fresh, "nothing generated"
    stale = [p.name for p in fresh if (generate.OUT / p.name).read_text() != p.read_text()]
    assert not stale, f"run `make protos`: stale generated files {stale}"
    committed = {p.name for p in generate.OUT.glob("*_pb2*.py*")}
    assert committed == {p.name for p in fresh}
