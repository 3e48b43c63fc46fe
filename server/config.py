"""``ringfence serve`` settings: flags, each also settable as a ``RINGFENCE_*`` variable."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from server.bundle.tenant_config import hash_token

STATE_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


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
    # Idempotent Evaluate (docs/state.md): how long a request_id is remembered; 0 turns it off.
    idempotency_window_s: float = 600.0


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
    # Idempotency and state scale-out.
    (
        "--idempotency-window",
        "RINGFENCE_IDEMPOTENCY_WINDOW",
        "600",
        "seconds a request_id is remembered: a retry within it is not recorded again (0: off)",
    ),
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, env, default, help_text in OPTIONS:
        parser.add_argument(
            flag,
            default=os.environ.get(env, default),
            help=f"{help_text} [env {env}, default {default or 'unset'}]",
        )


def _read_secret(value: str, path: str, what: str) -> str:
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    return value


def _number(text: str, flag: str, *, minimum: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag}: not a number: {text!r}") from None
    if value < minimum:
        raise ConfigError(f"{flag}: must be >= {minimum}")
    return value


def _address(text: str, flag: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{flag}: expected HOST:PORT, got {text!r}")
    return text


def from_namespace(ns: argparse.Namespace) -> ServeConfig:
    admin = _read_secret(ns.admin_token, ns.admin_token_file, "admin token")
    hash_key = _read_secret(ns.hash_key, ns.hash_key_file, "hash key")
    tls = [Path(p) if p else None for p in (ns.tls_cert, ns.tls_key, ns.tls_client_ca)]
    if bool(tls[0]) != bool(tls[1]):
        raise ConfigError("--tls-cert and --tls-key go together")
    if tls[2] and not tls[0]:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    for p in tls:
        if p is not None and not p.is_file():
            raise ConfigError(f"TLS file not found: {p}")
    if not (ns.state == "memory://" or ns.state.startswith(STATE_SCHEMES)):
        raise ConfigError(
            f"--state: expected memory://, redis://HOST:PORT/DB or redis+cluster://HOST:PORT,..."
            f" got {ns.state!r}"
        )
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
        idempotency_window_s=_number(ns.idempotency_window, "--idempotency-window", minimum=0),
    )
