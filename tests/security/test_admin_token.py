"""A blank admin token is a start-up error; an open PolicyService is announced (issue 11,
item 4). A blank ``--admin-token-file`` used to leave PolicyService open without a word."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import grpc
import pytest
from support import RINGFENCE, Process, server_process, wait_serving

from server.api import policy_pb2 as ppb
from server.api import policy_pb2_grpc


def serve(
    rules: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RINGFENCE), "serve", "--rules", str(rules), "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("content", "flag_form"),
    [("", "flag"), ("  \n\t\n", "flag"), ("", "env"), ("\n", "env")],
    ids=["empty-file", "whitespace-file", "empty-file-env", "newline-file-env"],
)
def test_a_blank_admin_token_file_stops_the_start(
    rules_copy: Path, tmp_path: Path, content: str, flag_form: str
) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(content)
    if flag_form == "flag":
        out = serve(rules_copy, "--admin-token-file", str(token_file))
    else:
        out = serve(rules_copy, env={"RINGFENCE_ADMIN_TOKEN_FILE": str(token_file)})
    assert out.returncode == 2
    assert f"--admin-token-file {token_file} holds no token" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_admin_token_flag_stops_the_start(rules_copy: Path, value: str) -> None:
    out = serve(rules_copy, "--admin-token", value)
    assert out.returncode == 2
    assert "--admin-token is blank" in out.stderr


def test_an_empty_admin_token_variable_stops_the_start(rules_copy: Path) -> None:
    out = serve(rules_copy, env={"RINGFENCE_ADMIN_TOKEN": " "})
    assert out.returncode == 2
    assert "--admin-token is blank" in out.stderr


def _stopped_output(srv: Process) -> str:
    """Everything the server logged, once it is SERVING (its start-up warnings come
    before that) and then stopped."""
    wait_serving(srv.address)
    srv.proc.terminate()
    srv.proc.wait(20)
    assert srv.proc.stderr is not None
    return json.dumps(srv.lines) + srv.proc.stderr.read().decode()


def test_an_open_policy_service_is_announced(rules_copy: Path) -> None:
    with server_process(rules_copy) as srv:
        out = _stopped_output(srv)
    assert "PolicyService has no admin token" in out


def test_with_a_token_policy_service_is_closed_and_quiet(rules_copy: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("s3cret\n")
    with server_process(rules_copy, "--admin-token-file", str(token_file)) as srv:
        wait_serving(srv.address)
        with grpc.insecure_channel(srv.address) as ch:
            stub = policy_pb2_grpc.PolicyServiceStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                stub.GetPolicyStatus(ppb.GetPolicyStatusRequest(), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            ok = stub.GetPolicyStatus(
                ppb.GetPolicyStatusRequest(),
                metadata=(("authorization", "Bearer s3cret"),),
                timeout=10,
            )
            assert ok.tenants
        out = _stopped_output(srv)
    assert "PolicyService has no admin token" not in out
