"""``ringfence serve`` settings: flags, each also settable as a ``RINGFENCE_*`` variable."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from server.bundle.budget import CompileBudget
from server.bundle.tenant_config import hash_token


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ServeConfig:
    rules: Path
    listen: str = "127.0.0.1:50051"
    state: str = "memory://"
    state_timeout_ms: float = 20.0
    hash_key: bytes = b""
    admin_token_hashes: frozenset[str] = frozenset()
    metrics_listen: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    grace_s: float = 10.0
    log_level: str = "info"
    decision_log: str = ""
    segments: Path | None = None
    watch: bool = True
    reload_debounce_ms: int = 200
    compile_budget: CompileBudget = field(default_factory=CompileBudget)


# flag, env var, default, help
OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("--rules", "RINGFENCE_RULES", "rules", "rules directory: one folder per tenant"),
    ("--listen", "RINGFENCE_LISTEN", "127.0.0.1:50051", "gRPC address HOST:PORT"),
    ("--state", "RINGFENCE_STATE", "memory://", "state backend: memory:// or redis://HOST:PORT/DB"),
    ("--state-timeout-ms", "RINGFENCE_STATE_TIMEOUT_MS", "20", "per-call state backend timeout"),
    ("--hash-key", "RINGFENCE_HASH_KEY", "", "secret for hashing numbers (share across replicas)"),
    ("--hash-key-file", "RINGFENCE_HASH_KEY_FILE", "", "file holding the hash secret"),
    ("--admin-token", "RINGFENCE_ADMIN_TOKEN", "", "bearer token PolicyService requires"),
    ("--admin-token-file", "RINGFENCE_ADMIN_TOKEN_FILE", "", "file holding the admin token"),
    ("--metrics-listen", "RINGFENCE_METRICS_LISTEN", "", "Prometheus /metrics HOST:PORT (off)"),
    ("--tls-cert", "RINGFENCE_TLS_CERT", "", "server certificate (PEM) to serve TLS"),
    ("--tls-key", "RINGFENCE_TLS_KEY", "", "server private key (PEM)"),
    ("--tls-client-ca", "RINGFENCE_TLS_CLIENT_CA", "", "CA bundle: require client certs (mTLS)"),
    ("--grace", "RINGFENCE_GRACE", "10", "seconds to finish in-flight calls on shutdown"),
    ("--log-level", "RINGFENCE_LOG_LEVEL", "info", "debug, info, warning, error"),
    ("--decision-log", "RINGFENCE_DECISION_LOG", "", "decision log file, '-' for stdout (off)"),
    ("--segments", "RINGFENCE_SEGMENTS", "", "CN segment table CSV (default: the packaged one)"),
    ("--watch", "RINGFENCE_WATCH", "true", "reload when the rules directory changes"),
    ("--compile-timeout", "RINGFENCE_COMPILE_TIMEOUT", "20", "seconds one policy compile may take"),
    ("--compile-memory-mb", "RINGFENCE_COMPILE_MEMORY_MB", "512", "memory of a compiler process"),
    ("--compile-workers", "RINGFENCE_COMPILE_WORKERS", "2", "policy compiler processes"),
    ("--compile-queue", "RINGFENCE_COMPILE_QUEUE", "8", "ValidatePolicy calls that may wait"),
)
# A blank admin token must be an error, not an open PolicyService: these two have no
# default, so "not given" (None) and "given but empty" ("") stay apart.
_NO_DEFAULT = {"--admin-token", "--admin-token-file"}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, env, default, help_text in OPTIONS:
        parser.add_argument(
            flag,
            default=os.environ.get(env) if flag in _NO_DEFAULT else os.environ.get(env, default),
            help=f"{help_text} [env {env}, default {default or 'unset'}]",
        )


def _read_secret(value: str, path: str, what: str) -> str:
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    return value


def _admin_token(value: str | None, path: str | None) -> str:
    """The admin token, or "" when neither flag (nor variable) is given: PolicyService is
    then open, which the server warns about. Given but blank is a mistake, not "open"."""
    if path is not None:
        if not path.strip():
            raise ConfigError("--admin-token-file is empty: give the path of the token file")
        token = _read_secret("", path, "admin token")
        if not token:
            raise ConfigError(
                f"--admin-token-file {path} holds no token (the file is empty or blank); "
                "PolicyService will not start open by accident"
            )
        return token
    if value is not None and not value.strip():
        raise ConfigError(
            "--admin-token is blank; give a token, or leave it unset to run PolicyService "
            "open (not for production)"
        )
    return (value or "").strip()


def _whole(text: str, flag: str, *, minimum: int) -> int:
    value = _number(text, flag, minimum=minimum)
    if value != int(value):
        raise ConfigError(f"{flag}: must be a whole number, not {text!r}")
    return int(value)


def _number(text: str, flag: str, *, minimum: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{flag}: not a finite number: {text!r}")
    if value < minimum:
        raise ConfigError(f"{flag}: must be >= {minimum}")
    return value


def _address(text: str, flag: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{flag}: expected HOST:PORT, got {text!r}")
    return text


def from_namespace(ns: argparse.Namespace) -> ServeConfig:
    admin = _admin_token(ns.admin_token, ns.admin_token_file)
    hash_key = _read_secret(ns.hash_key, ns.hash_key_file, "hash key")
    tls = [Path(p) if p else None for p in (ns.tls_cert, ns.tls_key, ns.tls_client_ca)]
    if bool(tls[0]) != bool(tls[1]):
        raise ConfigError("--tls-cert and --tls-key go together")
    if tls[2] and not tls[0]:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    for p in tls:
        if p is not None and not p.is_file():
            raise ConfigError(f"TLS file not found: {p}")
    if not (ns.state == "memory://" or ns.state.startswith(("redis://", "rediss://", "unix://"))):
        raise ConfigError(f"--state: expected memory:// or redis://HOST:PORT/DB, got {ns.state!r}")
    if ns.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level: unknown level {ns.log_level!r}")
    return ServeConfig(
        rules=Path(ns.rules),
        listen=_address(ns.listen, "--listen"),
        state=ns.state,
        state_timeout_ms=_number(ns.state_timeout_ms, "--state-timeout-ms", minimum=1),
        hash_key=hash_key.encode(),
        admin_token_hashes=frozenset({hash_token(admin)}) if admin else frozenset(),
        metrics_listen=_address(ns.metrics_listen, "--metrics-listen") if ns.metrics_listen else "",
        tls_cert=tls[0],
        tls_key=tls[1],
        tls_client_ca=tls[2],
        grace_s=_number(ns.grace, "--grace", minimum=0),
        log_level=ns.log_level.lower(),
        decision_log=ns.decision_log,
        segments=Path(ns.segments) if ns.segments else None,
        watch=str(ns.watch).lower() not in ("0", "false", "no", "off"),
        compile_budget=_budget(
            ns.compile_timeout, ns.compile_memory_mb, ns.compile_workers, ns.compile_queue
        ),
    )


def _budget(timeout: str, memory_mb: str, workers: str, queue: str) -> CompileBudget:
    return CompileBudget(
        timeout_s=_number(timeout, "--compile-timeout", minimum=0.1),
        memory_mb=_whole(memory_mb, "--compile-memory-mb", minimum=64),
        workers=_whole(workers, "--compile-workers", minimum=1),
        queue=_whole(queue, "--compile-queue", minimum=0),
    )


def compile_budget_from_env() -> CompileBudget:
    """The serve budget's ``RINGFENCE_COMPILE_*`` variables, for the offline tools
    (``ringfence check`` compiles exactly as the server would)."""
    values = {
        flag: os.environ.get(env, default)
        for flag, env, default, _ in OPTIONS
        if flag.startswith("--compile-")
    }
    return _budget(
        values["--compile-timeout"],
        values["--compile-memory-mb"],
        values["--compile-workers"],
        values["--compile-queue"],
    )
