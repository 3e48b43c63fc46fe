"""Bundle credentials never reach a log line: the user info of the URL, a presigned query
(the signature *is* the credential), the bearer token, the registry password. Whoever
reads the pod's logs (a log pipeline, a support bundle) must not be able to fetch the
policy or anything else with what they read.

A real ``ringfence serve`` pulls from a real nginx at debug level, so every library's
logger speaks (httpx logs each request's URL at INFO); its whole output is searched.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import processes
import pytest
from bundle_support import Keys, make_keys, publish, rules
from conftest_nginx import TOKEN, NginxServer, NginxUnavailable, free_port
from support import read_json_line, server_process

PASSWORD = "pass-word-in-the-url"
SIGNATURE = "a5f3signature0in0the0query"
CREDENTIAL = "AKIAcredential0in0the0query"
QUERY = f"X-Amz-Credential={CREDENTIAL}&X-Amz-Signature={SIGNATURE}&X-Amz-Expires=600"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxServer]:
    with processes.running(
        lambda: NginxServer.start(tmp_path / "nginx", tmp_path / "www"), NginxUnavailable
    ) as server:
        yield server


def run_and_read_logs(
    tmp_path: Path, args: list[str], polls_seen: Callable[[list[dict[str, Any]]], bool]
) -> str:
    """Serve with ``args`` at debug level until ``polls_seen(log lines so far)``, SIGTERM,
    all output. Every wait is for a state, read from the server's own log."""
    with server_process(
        tmp_path / "unused-rules",
        *args,
        "--bundle-poll",
        "1",
        "--bundle-jitter",
        "0",
        "--bundle-dir",
        str(tmp_path / "work"),
        "--log-level",
        "debug",
    ) as srv:
        lines = list(srv.lines)
        while not polls_seen(lines):
            line = read_json_line(srv.proc, time.monotonic() + 120)
            assert line is not None, "the server never polled as expected"
            lines.append(line)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0
        assert srv.proc.stderr is not None
        rest = srv.proc.stderr.read().decode(errors="replace")
    head = "\n".join(json.dumps(line) for line in lines)
    return head + "\n" + rest


def messages(lines: list[dict[str, Any]], text: str) -> int:
    return sum(1 for line in lines if text in str(line.get("msg", "")))


def secrets_in(text: str) -> list[str]:
    return [s for s in (PASSWORD, SIGNATURE, CREDENTIAL, TOKEN) if s in text]


def test_url_credentials_and_presigned_queries_stay_out_of_the_logs(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    url = f"http://reader:{PASSWORD}@127.0.0.1:{nginx.port}/b.tar.gz?{QUERY}"

    def polls_seen(lines: list[dict[str, Any]]) -> bool:
        return messages(lines, "HTTP Request: GET") >= 3

    text = run_and_read_logs(
        tmp_path, ["--bundle", url, "--bundle-public-key", str(keys.pub)], polls_seen
    )
    assert secrets_in(text) == [], text[-3000:]
    # The HTTP client did log its requests: redacted, not silenced.
    assert "HTTP Request: GET http://REDACTED@127.0.0.1" in text, text[-3000:]
    assert "X-Amz-Signature=REDACTED" in text


def test_errors_that_quote_the_url_are_redacted_too(tmp_path: Path, keys: Keys) -> None:
    """Nothing listens on the port: connection errors (and their tracebacks at debug
    level) are what the log gets, on every poll."""
    port = free_port()
    url = f"http://reader:{PASSWORD}@127.0.0.1:{port}/b.tar.gz?{QUERY}"

    def polls_seen(lines: list[dict[str, Any]]) -> bool:
        return messages(lines, "bundle not activated") >= 2

    text = run_and_read_logs(
        tmp_path, ["--bundle", url, "--bundle-public-key", str(keys.pub)], polls_seen
    )
    assert "bundle not activated" in text
    assert secrets_in(text) == [], text[-3000:]


def test_a_token_and_a_url_from_files_stay_out_of_the_logs(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    url_file = tmp_path / "bundle-url"
    url_file.write_text(f"http://127.0.0.1:{nginx.port}/private/b.tar.gz?{QUERY}\n")
    token_file = tmp_path / "bundle-token"
    token_file.write_text(TOKEN)

    def polls_seen(lines: list[dict[str, Any]]) -> bool:
        return messages(lines, "HTTP/1.1 304") >= 2

    text = run_and_read_logs(
        tmp_path,
        [
            "--bundle-file",
            str(url_file),
            "--bundle-token-file",
            str(token_file),
            "--bundle-public-key",
            str(keys.pub),
        ],
        polls_seen,
    )
    assert "bundle activated" in text
    assert secrets_in(text) == [], text[-3000:]
