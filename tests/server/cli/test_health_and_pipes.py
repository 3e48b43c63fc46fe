"""``ringfence health --local`` (the image's HEALTHCHECK) asks the server its own settings
describe, whatever ``RINGFENCE_LISTEN`` says and with TLS on; and a tool whose reader goes
away (``| head``) stops quietly instead of printing a BrokenPipeError traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from certs import make_pki
from support import RINGFENCE, RULES, running_server

POLICY = 'rule invalid {\n  when not phone.valid\n  then review\n  reason "x"\n}\n'


async def health(env: dict[str, str], *args: str) -> tuple[int, str]:
    """``ringfence health --local`` as the HEALTHCHECK runs it, with only ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
    result = await asyncio.to_thread(
        subprocess.run,
        [str(RINGFENCE), "health", "--local", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_local_health_follows_the_settings(tmp_path: Path, tls: bool) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    settings: dict[str, object] = {"health_listen": "127.0.0.1:0"}
    env: dict[str, str] = {}
    if tls:
        pki = make_pki(tmp_path)
        settings.update(tls_cert=pki.server_cert, tls_key=pki.server_key)
        env["RINGFENCE_TLS_CERT"] = str(pki.server_cert)
    async with running_server(rules, **settings) as s:
        env["RINGFENCE_LISTEN"] = f"0.0.0.0:{s.server.port}"
        env["RINGFENCE_HEALTH_LISTEN"] = f"0.0.0.0:{s.server.health_port}"
        code, out = await health(env)
        assert (code, "503 NOT_SERVING" in out) == (1, True), out  # no policy yet
        assert (await health(env, "--live"))[0] == 0  # but alive
        (rules / "demo").mkdir()
        (rules / "demo" / "policy.rf").write_text(POLICY)
        await s.server.reload()
        code, out = await health(env)
        assert (code, "200 SERVING" in out) == (0, True), out
        # Without the HTTP endpoint: gRPC health on RINGFENCE_LISTEN, plaintext only.
        del env["RINGFENCE_HEALTH_LISTEN"]
        code, out = await health(env)
        if tls:
            assert code == 1
            assert "set RINGFENCE_HEALTH_LISTEN" in out
        else:
            assert code == 0, out
            assert "SERVING" in out


def test_a_reader_that_goes_away_ends_the_tool_quietly(tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    subprocess.run(
        [str(RINGFENCE), "bundle", "build", str(RULES), "-o", str(out), "--no-check"],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [str(RINGFENCE), "bundle", "inspect", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # `| head` that has read enough
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 141  # as a tool killed by SIGPIPE
    assert err == ""
