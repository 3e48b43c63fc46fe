"""Serve flags for delivery: bundles need a way to verify them, addresses and numbers are
checked, and every problem is a one-line error, not a traceback."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest
from support import RINGFENCE

from server.bundle.signing import generate
from server.config import ConfigError, add_serve_arguments, from_namespace


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(args))


@pytest.fixture
def pub(tmp_path: Path) -> Path:
    (tmp_path / "k.pub.pem").write_bytes(generate("es256")[1])
    return tmp_path / "k.pub.pem"


def test_bundle_settings(tmp_path: Path, pub: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    cfg = from_namespace(
        parse(
            "--bundle",
            "https://b.example/r.tar.gz",
            "--bundle-public-key",
            str(pub),
            "--bundle-poll",
            "10",
            "--bundle-jitter",
            "2",
            "--bundle-max-mb",
            "64",
            "--bundle-token-file",
            str(tmp_path / "token"),
            "--bundle-dir",
            str(tmp_path / "work"),
        )
    ).bundle
    assert cfg is not None
    assert (cfg.poll_s, cfg.jitter_s, cfg.max_bytes) == (10.0, 2.0, 64 << 20)
    assert cfg.token == "s3cret"
    assert cfg.public_keys == (pub,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bundle", "https://b/r.tgz"], "needs --bundle-public-key or --bundle-keyring"),
        (["--bundle", "ftp://b/r.tgz", "--bundle-allow-unsigned", "true"], "http:// or https://"),
        (["--bundle", "https://b/r.tgz", "--bundle-public-key", "/nope.pem"], "file not found"),
        (["--bundle", "https://b/r.tgz", "--bundle-keyring", "/nope"], "not a directory"),
        (
            ["--bundle", "https://b/r.tgz", "--bundle-allow-unsigned", "1", "--bundle-poll", "0"],
            "--bundle-poll: must be >= 1",
        ),
        (["--health-listen", "8080"], "--health-listen: expected HOST:PORT"),
        (["--max-connection-age", "-1"], "--max-connection-age: must be >= 0"),
        (["--watch-poll-ms", "soon"], "--watch-poll-ms: not a number"),
        (["--state-secrets-dir", "/nope"], "not a directory"),
        (["--max-concurrent-rpcs", "0"], "--max-concurrent-rpcs: must be >= 1"),
        (["--max-streams-per-connection", "2.5"], "must be a whole number"),
        (["--stream-idle-timeout", "-1"], "--stream-idle-timeout: must be >= 0"),
        (
            ["--bundle", "https://b/r.tgz%0d%0aX-Evil: 1", "--bundle-allow-unsigned", "1"],
            "--bundle: the URL holds a control character",
        ),
    ],
)
def test_bad_delivery_flags(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_namespace(parse(*args))


def test_a_public_key_that_is_not_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match=r"bundle keys: .*not a PEM public key"):
        from_namespace(parse("--bundle", "https://b/r.tgz", "--bundle-public-key", str(bad)))


def test_serve_reports_a_bad_bundle_flag_in_one_line() -> None:
    result = subprocess.run(
        [str(RINGFENCE), "serve", "--bundle", "https://b/r.tgz"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("ringfence serve: --bundle needs")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), ("AUTO", "auto"), ("3", 3), ("1", 1)],
)
def test_compile_workers(value: str, expected: object) -> None:
    from server.bundle.budget import default_workers

    cfg = from_namespace(parse("--compile-workers", value))
    want = default_workers() if expected == "auto" else expected
    assert cfg.compile_budget.workers == want


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("two", "--compile-workers: not a number: 'two' (or 'auto'"),
        ("0", "--compile-workers: must be >= 1 (or 'auto'"),
        ("1.5", "--compile-workers: must be a whole number, not '1.5' (or 'auto'"),
    ],
)
def test_compile_workers_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_namespace(parse("--compile-workers", value))
    assert str(exc.value).startswith(message)


def test_compile_defaults_leave_the_server_a_core() -> None:
    from server.host import usable_cpus

    budget = from_namespace(parse()).compile_budget
    assert budget.workers == max(1, min(2, usable_cpus() // 2))
    assert budget.queue == 32


def test_grpc_limits() -> None:
    defaults = from_namespace(parse())
    assert (
        defaults.max_concurrent_rpcs,
        defaults.max_streams_per_connection,
        defaults.stream_idle_timeout_s,
    ) == (1000, 100, 300.0)
    cfg = from_namespace(
        parse(
            "--max-concurrent-rpcs",
            "50",
            "--max-streams-per-connection",
            "8",
            "--stream-idle-timeout",
            "0",
        )
    )
    assert (cfg.max_concurrent_rpcs, cfg.max_streams_per_connection) == (50, 8)
    assert cfg.stream_idle_timeout_s == 0
