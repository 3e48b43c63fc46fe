"""The wheel is the product: build it, install it outside the source tree, serve, stop.

Catches what an editable install hides: missing package data (the grammar, the segment
table, stubs), a broken console script, imports of files that are not packaged.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from deploy.deploy_support import REPO, SERVICE, wait_serving

pytestmark = pytest.mark.slow

# What the Dockerfile's build stage copies.
SOURCES = ("pyproject.toml", "README.md", "dsl", "server")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")  # as .dockerignore
GRACE_S = 2


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=clean_env(),
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def clean_env() -> dict[str, str]:
    # Nothing may lead the installed copy back to the source tree.
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv, outside the source tree, holding only the built wheel."""
    root = tmp_path_factory.mktemp("wheel")
    # Build from a copy holding only what the Dockerfile copies: a file the package needs but
    # the image build would not see fails here, and setuptools' build/ stays out of the tree.
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=IGNORED)
        else:
            shutil.copy2(REPO / name, source / name)
    dist = root / "dist"
    # No isolation: tests reach no index, and this venv already has the build backend.
    run(
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--no-isolation",
        "--skip-dependency-check",
        "--outdir",
        dist,
        source,
        cwd=root,
    )
    wheels = list(dist.glob("ringfence-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    python = venv / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--no-cache-dir",
        wheels[0],
        cwd=root,
    )
    # Third-party dependencies come from the test venv's site-packages (no network in tests).
    # A .pth line only adds the directory: the .pth files in it, among them the editable
    # install's finder that points at the source tree, are not run.
    purelib = Path(sysconfig.get_paths()["purelib"])
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root
        ).stdout.strip()
    )
    (site / "zz_test_dependencies.pth").write_text(f"{purelib}\n")
    where = run(
        python, "-c", "import dsl, server; print(dsl.__file__); print(server.__file__)", cwd=root
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    return venv / "bin"


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def test_installed_wheel_serves_and_stops_cleanly(installed: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    address = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            str(installed / "ringfence"),
            "serve",
            "--rules",
            str(rules),
            "--listen",
            address,
            "--grace",
            str(GRACE_S),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
    )
    try:
        wait_serving(address, proc, log_path, "server")
        health = run(installed / "ringfence", "health", address, "--service", SERVICE, cwd=tmp_path)
        assert "SERVING" in health.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=GRACE_S + 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    assert "Traceback" not in log_path.read_text(errors="replace"), tail(log_path)


def test_installed_wheel_writes_a_report(installed: Path, tmp_path: Path) -> None:
    # The report's page template is package data: an editable install would find it anyway.
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"tenant": "demo", "phone_number": "+8617112340000",'
        ' "event": {"scene": "register", "occurred_at": 1790000000}}\n'
    )
    report = tmp_path / "report.html"
    run(
        installed / "ringfence",
        "replay",
        events,
        "--rules",
        REPO / "rules",
        "--report",
        report,
        cwd=tmp_path,
    )
    assert "Plotly.newPlot" in report.read_text(encoding="utf-8")
