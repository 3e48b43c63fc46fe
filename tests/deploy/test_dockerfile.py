"""The Dockerfile passes hadolint and has the shape the chart relies on."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from deploy.deploy_support import DOCKERFILE, REPO, tool


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    # No config file: the defaults, failing on every finding down to "info".
    return subprocess.run(
        [str(tool("hadolint")), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_is_clean() -> None:
    result = hadolint(DOCKERFILE)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# hadolint must be able to fail: known-bad Dockerfiles and the rule each one breaks.
BAD = [
    ("latest base", "FROM python:latest\nUSER 10001\n", "DL3007"),
    (
        "unpinned pip",
        "FROM python:3.11-slim\nRUN pip install --no-cache-dir grpcio\nUSER 10001\n",
        "DL3013",
    ),
    (
        "shell-form entrypoint",
        "FROM python:3.11-slim\nUSER 10001\nENTRYPOINT ringfence serve\n",
        "DL3025",
    ),
    (
        "apt without cleanup",
        "FROM debian:12\nRUN apt-get update && apt-get install -y "
        "--no-install-recommends curl=7.88.1-10\nUSER 10001\n",
        "DL3009",
    ),
]


@pytest.mark.parametrize(("text", "rule"), [pytest.param(t, r, id=i) for i, t, r in BAD])
def test_hadolint_catches(tmp_path: Path, text: str, rule: str) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    result = hadolint(dockerfile)
    assert result.returncode != 0
    assert rule in result.stdout


def instructions(text: str) -> list[tuple[str, str]]:
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def runtime_stage() -> list[tuple[str, str]]:
    steps = instructions(DOCKERFILE.read_text())
    starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(starts) >= 2, "expected a multi-stage build"
    return steps[starts[-1] :]


def last(word: str) -> str:
    values = [rest for w, rest in runtime_stage() if w == word]
    assert values, f"no {word} in the runtime stage"
    return values[-1]


def test_base_image_is_an_argument() -> None:
    steps = instructions(DOCKERFILE.read_text())
    assert steps[0][0] == "ARG"
    assert steps[0][1].startswith("BASE_IMAGE=")
    assert all(rest.startswith("${BASE_IMAGE}") for w, rest in steps if w == "FROM")


def test_runtime_stage_shape() -> None:
    assert last("USER") == "10001:10001"
    assert json.loads(last("ENTRYPOINT")) == ["/opt/venv/bin/ringfence"]
    assert json.loads(last("CMD"))[0] == "serve"
    assert last("STOPSIGNAL") == "SIGTERM"
    assert "50051" in last("EXPOSE").split()
    assert "/etc/ringfence/rules" in json.loads(last("VOLUME"))
    labels = " ".join(rest for w, rest in runtime_stage() if w == "LABEL")
    for key in ("title", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    # Nothing is built or installed in the final stage (installers are only removed): no
    # compilers, no package caches. tests/deploy/test_image.py looks inside the image.
    runs = " ".join(rest for w, rest in runtime_stage() if w == "RUN")
    for word in ("pip install", "apt-get", "apt install", "gcc", "build-essential"):
        assert word not in runs


def test_dockerignore_admits_what_the_build_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied: set[str] = set()
    for word, rest in instructions(DOCKERFILE.read_text()):
        if word == "COPY" and "--from=" not in rest:
            sources = [a for a in rest.split() if not a.startswith("--")][:-1]
            copied.update(s.rstrip("/") for s in sources)
        if word == "RUN":  # files bound in for one step
            copied.update(re.findall(r"--mount=type=bind,source=([^,\s]+)", rest))
    assert copied <= allowed, copied - allowed
    for path in copied:
        assert (REPO / path).exists(), path
