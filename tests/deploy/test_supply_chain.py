"""Supply chain: a base image pinned by digest, a hashed lock file that covers every runtime
dependency and that the image installs from, and a CycloneDX SBOM built from it."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from deploy.deploy_support import DOCKERFILE, REPO, tool
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = REPO / "requirements.lock"
BUILD_LOCK = REPO / "requirements-build.lock"


def pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) for every requirement in a pip lock file."""
    text = lock.read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *rest = line.split(" --hash=")
        req = Requirement(spec.strip())
        (version,) = [s.version for s in req.specifier if s.operator == "=="]
        out[canonicalize_name(req.name)] = (version, [h.split()[0] for h in rest])
    return out


def test_every_runtime_dependency_is_locked_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = pins(LOCK)
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock: run `make lock`"
        version, _ = locked[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {req.name}=={version}, not {req.specifier}: run `make lock`"
        )
    for lock in (LOCK, BUILD_LOCK):
        for name, (_version, hashes) in pins(lock).items():
            assert hashes, f"{lock.name}: {name} has no --hash"
            assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_the_image_installs_only_from_the_locks() -> None:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    installs = [m.group(0) for m in re.finditer(r"pip install[^&\n]*", text)]
    assert installs, "no pip install in the Dockerfile"
    for install in installs:
        hashed = "--require-hashes -r requirements" in install
        own_wheel = "--no-deps /dist/" in install
        assert hashed or own_wheel, f"unhashed install: {install}"
    assert "--no-build-isolation" in text  # isolation would fetch setuptools unhashed


def test_base_image_is_pinned_by_digest() -> None:
    first = DOCKERFILE.read_text().split("ARG BASE_IMAGE=", 1)[1].split()[0]
    assert re.fullmatch(r"[\w.\-/:]+@sha256:[0-9a-f]{64}", first), first


def test_sbom_lists_the_lock_with_hashes(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    subprocess.run(
        [
            str(tool("cyclonedx-py")),
            "requirements",
            str(LOCK),
            "--pyproject",
            str(REPO / "pyproject.toml"),
            "--output-reproducible",
            "--of",
            "JSON",
            "-o",
            str(out),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["metadata"]["component"]["name"] == "ringfence"
    components = {canonicalize_name(c["name"]): c for c in bom["components"]}
    locked = pins(LOCK)
    assert set(components) == set(locked)
    for name, (version, hashes) in locked.items():
        c = components[name]
        assert c["version"] == version
        assert c["purl"] == f"pkg:pypi/{name}@{version}"
        listed = {
            f"sha256:{h['content']}"
            for ref in c["externalReferences"]
            for h in ref.get("hashes", [])
        }
        assert listed == set(hashes), name
