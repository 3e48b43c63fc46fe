"""The container image, built for real by .ci/image.sh and run with podman.

One lifecycle, the way production runs it: read-only root filesystem with nothing writable
mounted, the gRPC port published on 127.0.0.1 only, the image's own settings. The image must
become SERVING, decide exactly as the source tree does, run as UID 10001, pass its own
HEALTHCHECK and exit 0 on SIGTERM (``podman stop``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import grpc
import pytest
from deploy.deploy_support import REPO, wait_serving
from google.protobuf import json_format
from support import copy_rules, running_server

from server.api import decision_pb2, decision_pb2_grpc

pytestmark = pytest.mark.slow

SCRIPT = REPO / ".ci" / "image.sh"
# Written by the script: the engine settings this machine needs (runtime, ulimits). podman's
# helper processes change directory, so the path must be absolute.
CONTAINERS_CONF = REPO / ".tools" / "image" / "containers.conf"
IMAGE = "localhost/ringfence:dev"
SCRIPT_CANNOT_BUILD = 77
BUILD_TIMEOUT_S = 900  # cold: apt-get, debootstrap, PyPI downloads; ~100 s measured
STOP_TIMEOUT_S = 30  # above the image's default 10 s grace, so podman never falls to SIGKILL
TENANT = "demo"
PHONE = "+8613800138000"
UID = 10001


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    podman_bin = shutil.which("podman")
    assert podman_bin is not None, "podman vanished after .ci/image.sh installed it"
    result = subprocess.run(
        [podman_bin, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=podman_env(),
    )
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def image() -> str:
    """The image .ci/image.sh builds (seconds when nothing changed since its last run)."""
    result = subprocess.run(
        [str(SCRIPT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if result.returncode == SCRIPT_CANNOT_BUILD:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, f".ci/image.sh failed:\n{tail(result.stdout + result.stderr)}"
    assert CONTAINERS_CONF.is_file(), CONTAINERS_CONF
    return IMAGE


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def evaluate_request() -> decision_pb2.EvaluateRequest:
    return decision_pb2.EvaluateRequest(tenant=TENANT, phone_number=PHONE)


def comparable(resp: decision_pb2.EvaluateResponse) -> dict[str, object]:
    """The response without what differs per call by design."""
    data = json_format.MessageToDict(resp, preserving_proto_field_name=True)
    data.pop("request_id", None)
    return data


@pytest.fixture
async def expected(tmp_path: Path) -> dict[str, object]:
    """What the source tree decides for the request, served in-process from the same rules."""
    async with running_server(copy_rules(tmp_path)) as running:
        resp = await running.decisions.Evaluate(evaluate_request(), timeout=10)
    return comparable(resp)


def read(log: Path) -> str:
    return log.read_text(errors="replace")


def json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def process_ids(name: str) -> dict[str, list[int]]:
    """Real/effective/saved/fs uid and gid of PID 1, the server itself, not a fresh exec."""
    status = podman("exec", name, "cat", "/proc/1/status").stdout
    ids = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = [int(v) for v in rest.split()]
    return ids


@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_image_serves_read_only_as_10001_and_stops_cleanly(
    image: str, expected: dict[str, object], tmp_path: Path
) -> None:
    name = f"ringfence-test-{secrets.token_hex(4)}"
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = tmp_path / "container.log"
    # Attached rather than -d: the `podman run` process then exits with the container's own
    # status, which --rm would otherwise delete before it could be read.
    command = [
        "run",
        "--rm",
        "--name",
        name,
        "--read-only",
        # podman's --read-only still mounts tmpfs on /tmp, /var/tmp and /run unless told not
        # to, and would make the image's VOLUMEs writable: neither is given, to show the
        # server needs no writable path at all (its bytecode is compiled at build time).
        "--read-only-tmpfs=false",
        "--image-volume=ignore",
        # Its interval timer needs systemd, absent here (podman logs an error and carries on);
        # the check itself is run by hand below.
        "--health-interval=disable",
        "--publish",
        f"127.0.0.1:{port}:50051",
        image,
    ]
    podman_bin = shutil.which("podman")
    assert podman_bin is not None
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [podman_bin, *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=podman_env(),
        )
    try:
        wait_serving(address, proc, log, "container")

        with grpc.insecure_channel(address) as channel:
            stub = decision_pb2_grpc.DecisionServiceStub(channel)
            resp = stub.Evaluate(evaluate_request(), timeout=10)
        assert resp.request_id
        assert comparable(resp) == expected

        assert podman("exec", name, "id", "-u").stdout.strip() == str(UID)
        assert process_ids(name) == {"Uid": [UID] * 4, "Gid": [UID] * 4}
        assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name).stdout == (
            "true\n"
        )
        probe = podman("exec", name, "touch", "/tmp/probe", check=False)
        assert probe.returncode != 0, probe
        assert "Read-only file system" in probe.stderr, probe
        # The image's own HEALTHCHECK command, as Docker or an orchestrator would run it.
        podman("healthcheck", "run", name)

        podman("stop", "--time", str(STOP_TIMEOUT_S), name, timeout=STOP_TIMEOUT_S + 30)
        assert proc.wait(timeout=30) == 0, tail(read(log))
    finally:
        if proc.poll() is None:
            podman("rm", "--force", "--ignore", name, check=False)
            proc.wait(timeout=30)
        podman("rm", "--force", "--ignore", name, check=False)

    text = read(log)
    lines = json_lines(text)
    listening = [line for line in lines if line.get("msg") == "listening"]
    assert listening, tail(text)
    assert listening[0]["port"] == 50051, tail(text)
    assert any(line.get("msg") == "stopped" for line in lines), tail(text)
    assert "Traceback" not in text, tail(text)
    # Personal data: the number must not appear in the logs in any raw form.
    assert PHONE.lstrip("+") not in text, tail(text)
    assert PHONE[3:] not in text, tail(text)


def run_in_image(image: str, script: str, program: str = "/bin/sh") -> str:
    """``program -c script`` in the image, no network, nothing mounted."""
    result = podman(
        "run",
        "--rm",
        "--network=none",
        "--health-interval=disable",
        "--entrypoint",
        program,
        image,
        "-c",
        script,
    )
    return result.stdout


# Installers and build tools: none may ship (what pip can install, the service must not).
TOOLS = ("pip", "pip3", "pip3.11", "apt", "apt-get", "apt-cache", "gcc", "cc", "make", "wheel")
MODULES = ("pip", "setuptools", "wheel", "ensurepip", "grpc_tools")


def test_image_ships_no_installers_or_build_tools(image: str) -> None:
    found = run_in_image(image, f"for t in {' '.join(TOOLS)}; do command -v $t; done; true")
    assert found.strip() == "", found
    probe = f"import importlib.util as u; print([m for m in {MODULES!r} if u.find_spec(m)])"
    for python in ("/usr/bin/python3", "/opt/venv/bin/python"):
        assert run_in_image(image, probe, program=python).strip() == "[]", python
    # dpkg's database stays, and no longer lists what was removed.
    listed = run_in_image(image, "dpkg-query -W -f '${Package}\\n'").split()
    assert "libc6" in listed
    assert not {"apt", "python3-pip", "python3-setuptools", "python3-venv"} & set(listed)


def test_image_sbom_lists_os_packages_the_interpreter_and_licences(image: str) -> None:
    sbom = json.loads((REPO / "build" / "sbom-image.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["specVersion"] == "1.6"
    components = sbom["components"]
    by_name = {c["name"]: c for c in components}
    assert by_name["debian"]["type"] == "operating-system"
    interpreter = by_name["cpython"]
    assert interpreter["type"] == "platform"
    assert interpreter["version"].startswith("3.")
    assert interpreter["licenses"] == [{"license": {"id": "PSF-2.0"}}]
    for deb in ("libc6", "python3.11", "ca-certificates", "bash"):
        assert by_name[deb]["purl"].startswith(f"pkg:deb/debian/{deb}@"), deb
    assert by_name["bash"]["licenses"]  # a machine-readable copyright file, read
    assert by_name["grpcio"]["purl"].startswith("pkg:pypi/grpcio@")
    assert by_name["grpcio"]["licenses"]
    assert by_name["ringfence"]["purl"].startswith("pkg:pypi/ringfence@")
    # What the image does not ship is not in its SBOM either, and the other way round.
    assert not {"pip", "setuptools", "wheel", "apt", "grpcio-tools", "python3-pip"} & set(by_name)
    installed = run_in_image(image, "dpkg-query -W -f '${Package}\\n'").split()
    debs = {c["name"] for c in components if c.get("purl", "").startswith("pkg:deb/")}
    assert debs == set(installed)
    with_licences = [c for c in components if c.get("licenses")]
    assert len(with_licences) > 0.9 * len(components)


@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_healthcheck_follows_the_listen_address_and_tls(image: str, tmp_path: Path) -> None:
    """RINGFENCE_LISTEN moved and TLS on: the image's own HEALTHCHECK still answers."""
    from certs import make_pki

    pki = make_pki(tmp_path)
    tmp_path.chmod(0o755)  # readable by UID 10001 through the bind mount
    for path in tmp_path.iterdir():
        path.chmod(0o644)
    name = f"ringfence-test-{secrets.token_hex(4)}"
    port = free_port()
    command = [
        "run", "--rm", "-d", "--name", name, "--read-only", "--health-interval=disable",
        "--publish", f"127.0.0.1:{port}:6000",
        "-v", f"{tmp_path}:/etc/ringfence/tls:ro",
        "-e", "RINGFENCE_LISTEN=0.0.0.0:6000",
        "-e", "RINGFENCE_TLS_CERT=/etc/ringfence/tls/server.pem",
        "-e", "RINGFENCE_TLS_KEY=/etc/ringfence/tls/server.key",
        image,
    ]  # fmt: skip
    podman(*command)
    try:
        # Readiness comes once the example policy has loaded: wait for that state.
        deadline_checks = 300
        for _ in range(deadline_checks):
            check = podman("healthcheck", "run", name, check=False)
            if check.returncode == 0:
                break
            assert podman("inspect", "--format", "{{.State.Running}}", name).stdout == "true\n"
        else:
            pytest.fail(f"HEALTHCHECK never passed: {check.stdout}{check.stderr}")
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
            resp = decision_pb2_grpc.DecisionServiceStub(channel).Evaluate(
                evaluate_request(), timeout=10
            )
        assert resp.request_id
    finally:
        podman("rm", "--force", "--ignore", name, check=False)
