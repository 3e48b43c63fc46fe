"""``ringfence serve`` settings: flags, each also settable as a ``RINGFENCE_*`` variable."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.bundle.budget import CompileBudget, default_workers
from server.bundle.tenant_config import hash_token
from server.state.catalog import BackendCatalog, CatalogError, build_catalog, check_state_url
from server.urls import has_control_characters


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
    # Idempotent Evaluate (docs/state.md): how long a request_id is remembered; 0 turns it off.
    idempotency_window_s: float = 600.0
    # Events stamped further back than this are refused (docs/state.md §1): a backfill is
    # for `ringfence replay`, and an event clock is never a way to forge an old history.
    max_event_lateness_s: float = 86_400.0
    # Delivery: polling watch, HTTP health, connection age, bundles.
    watch_poll_ms: int = 0
    health_listen: str = ""
    max_connection_age_s: float = 0.0
    max_connection_age_grace_s: float = 0.0
    # After SIGTERM, how long the server may wait for clients to leave before it stops
    # (server/shutdown.py); 0: no drain.
    drain_s: float = 0.0
    # Lists larger than this are parsed in a child process (server/lists/pool.py).
    list_child_min_bytes: int = 1 << 20
    bundle: BundleConfig | None = None
    # The operator's named state backends, and which tenant may pick which
    # (server/state/catalog.py): built from --state-backend, --state-secrets-dir and
    # --state-backend-tenants at start.
    state_backends: BackendCatalog = field(default_factory=BackendCatalog)
    # gRPC limits: calls in flight, streams per connection, and how long a stream may sit
    # without a message (0: forever).
    max_concurrent_rpcs: int = 1000
    max_streams_per_connection: int = 100
    stream_idle_timeout_s: float = 300.0


@dataclass(frozen=True, slots=True)
class BundleConfig:
    url: str
    work_dir: Path
    public_keys: tuple[Path, ...] = ()
    keyring_dir: Path | None = None
    allow_unsigned: bool = False
    poll_s: float = 30.0
    jitter_s: float = 5.0
    timeout_s: float = 300.0
    max_bytes: int = 256 << 20
    max_unpacked_bytes: int = 1 << 30
    ca_file: Path | None = None
    token: str = ""
    # Files re-read while the server runs (server/bundle/rotation.py): the URL and token
    # files; the keys (public_keys, keyring_dir) and ca_file are re-read too.
    url_file: Path | None = None
    token_file: Path | None = None
    token_realm_hosts: tuple[str, ...] = ()


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
    (
        "--compile-timeout",
        "RINGFENCE_COMPILE_TIMEOUT",
        "20",
        "CPU seconds a policy compile may use",
    ),
    ("--compile-memory-mb", "RINGFENCE_COMPILE_MEMORY_MB", "512", "memory of a compiler process"),
    (
        "--compile-workers",
        "RINGFENCE_COMPILE_WORKERS",
        "auto",
        "policy compiler processes (auto: half the CPUs this process may use, 1 or 2)",
    ),
    ("--compile-queue", "RINGFENCE_COMPILE_QUEUE", "32", "ValidatePolicy calls that may wait"),
    (
        "--idempotency-window",
        "RINGFENCE_IDEMPOTENCY_WINDOW",
        "600",
        "seconds a request_id is remembered: a retry within it is not recorded again (0: off)",
    ),
    (
        "--max-event-lateness",
        "RINGFENCE_MAX_EVENT_LATENESS",
        "1d",
        "how far back an event's occurred_at may be (a duration such as 1d, or seconds);"
        " older events are refused with INVALID_ARGUMENT",
    ),
    (
        "--max-concurrent-rpcs",
        "RINGFENCE_MAX_CONCURRENT_RPCS",
        "1000",
        "calls in flight at once (streams included); more are refused RESOURCE_EXHAUSTED",
    ),
    (
        "--max-streams-per-connection",
        "RINGFENCE_MAX_STREAMS_PER_CONNECTION",
        "100",
        "concurrent calls one client connection may hold (HTTP/2 MAX_CONCURRENT_STREAMS)",
    ),
    (
        "--stream-idle-timeout",
        "RINGFENCE_STREAM_IDLE_TIMEOUT",
        "300",
        "seconds an EvaluateStream may wait for its next message before it is ended (0: never)",
    ),
)
# Repeatable flags: each given once per value; the variable holds several, separated by
# whitespace (URLs and tenant lists never hold any).
REPEATED_OPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "--state-backend",
        "RINGFENCE_STATE_BACKENDS",
        'a named state backend NAME=URL that tenant.toml may pick with state = "NAME"',
    ),
    (
        "--state-backend-tenants",
        "RINGFENCE_STATE_BACKEND_TENANTS",
        "NAME=TENANT[,TENANT...] (or NAME=*): the tenants that may pick backend NAME",
    ),
)
# A blank admin token must be an error, not an open PolicyService: these two have no
# default, so "not given" (None) and "given but empty" ("") stay apart.
_NO_DEFAULT = {"--admin-token", "--admin-token-file"}


# Production delivery: secrets from files, watching without inotify, an HTTP health
# endpoint, connection ageing for balancing, and rules pulled as signed bundles.
DELIVERY_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("--state-file", "RINGFENCE_STATE_FILE", "", "file holding the --state URL (a mounted Secret)"),
    (
        "--state-secrets-dir",
        "RINGFENCE_STATE_SECRETS_DIR",
        "",
        "directory of state backend URL files: each file is a backend named after it",
    ),
    (
        "--watch-poll-ms",
        "RINGFENCE_WATCH_POLL_MS",
        "0",
        "poll the rules dir every N ms (NFS; 0: inotify)",
    ),
    (
        "--health-listen",
        "RINGFENCE_HEALTH_LISTEN",
        "",
        "plain HTTP /healthz, /readyz HOST:PORT (off)",
    ),
    (
        "--max-connection-age",
        "RINGFENCE_MAX_CONNECTION_AGE",
        "0",
        "seconds before a client connection is asked to reconnect (0: never)",
    ),
    (
        "--max-connection-age-grace",
        "RINGFENCE_MAX_CONNECTION_AGE_GRACE",
        "30",
        "seconds calls may run on after that",
    ),
    (
        "--drain-timeout",
        "RINGFENCE_DRAIN_TIMEOUT",
        "auto",
        "after SIGTERM, seconds to refuse new connections and wait for open ones to end "
        "before stopping (auto: 1.1 x --max-connection-age + 1, or 0 without an age)",
    ),
    (
        "--list-child-min-kb",
        "RINGFENCE_LIST_CHILD_MIN_KB",
        "1024",
        "list files larger than this are parsed in a child process, so a reload never stalls "
        "the server (0: every list)",
    ),
    (
        "--bundle",
        "RINGFENCE_BUNDLE",
        "",
        "pull rules as a bundle from an http(s) URL or oci://registry/repo:tag (replaces --rules)",
    ),
    (
        "--bundle-file",
        "RINGFENCE_BUNDLE_FILE",
        "",
        "file holding the --bundle URL (a mounted Secret, for URLs with credentials or a "
        "presigned query); re-read when it changes",
    ),
    (
        "--bundle-public-key",
        "RINGFENCE_BUNDLE_PUBLIC_KEY",
        "",
        "PEM public key bundles must be signed with",
    ),
    (
        "--bundle-keyring",
        "RINGFENCE_BUNDLE_KEYRING",
        "",
        "directory of *.pem public keys (any may sign)",
    ),
    (
        "--bundle-allow-unsigned",
        "RINGFENCE_BUNDLE_ALLOW_UNSIGNED",
        "false",
        "accept bundles without a signature",
    ),
    (
        "--bundle-dir",
        "RINGFENCE_BUNDLE_DIR",
        "",
        "where bundles are downloaded and unpacked (default: TMPDIR)",
    ),
    ("--bundle-poll", "RINGFENCE_BUNDLE_POLL", "30", "seconds between bundle polls"),
    (
        "--bundle-jitter",
        "RINGFENCE_BUNDLE_JITTER",
        "5",
        "up to this many seconds added to each interval",
    ),
    ("--bundle-timeout", "RINGFENCE_BUNDLE_TIMEOUT", "300", "seconds one bundle download may take"),
    ("--bundle-max-mb", "RINGFENCE_BUNDLE_MAX_MB", "256", "largest bundle archive accepted (MiB)"),
    (
        "--bundle-max-unpacked-mb",
        "RINGFENCE_BUNDLE_MAX_UNPACKED_MB",
        "1024",
        "largest unpacked bundle (MiB)",
    ),
    ("--bundle-ca", "RINGFENCE_BUNDLE_CA", "", "CA bundle (PEM) for an https bundle server"),
    (
        "--bundle-token-file",
        "RINGFENCE_BUNDLE_TOKEN_FILE",
        "",
        "file holding a bearer token for the bundle server (oci://: user:password, or a token);"
        " re-read when it changes",
    ),
    (
        "--bundle-token-realm-hosts",
        "RINGFENCE_BUNDLE_TOKEN_REALM_HOSTS",
        "",
        "hosts (host or host:port, comma-separated) besides the registry itself whose token "
        "service an oci:// registry may send the server to, e.g. auth.docker.io",
    ),
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, env, default, help_text in (*OPTIONS, *DELIVERY_OPTIONS):
        parser.add_argument(
            flag,
            default=os.environ.get(env) if flag in _NO_DEFAULT else os.environ.get(env, default),
            help=f"{help_text} [env {env}, default {default or 'unset'}]",
        )
    for flag, env, help_text in REPEATED_OPTIONS:
        parser.add_argument(
            flag,
            action="append",
            default=None,
            help=f"{help_text}; repeatable [env {env}: several, separated by spaces]",
        )


def _repeated(ns: argparse.Namespace, flag: str) -> list[str]:
    """A repeatable flag's values; when the flag is not given, its variable's."""
    given = getattr(ns, flag.removeprefix("--").replace("-", "_"), None)
    if given is not None:
        return list(given)
    env = next(e for f, e, _ in REPEATED_OPTIONS if f == flag)
    return os.environ.get(env, "").split()


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


def _duration(text: str, flag: str) -> float:
    """Seconds, or a duration as the policy language writes it (``90m``, ``1d``)."""
    from dsl.durations import DurationError, parse_duration

    try:
        return _number(text, flag, minimum=0)
    except ConfigError:
        pass
    try:
        return float(parse_duration(text.strip()))
    except DurationError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


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
    state = _read_secret(ns.state, ns.state_file, "state URL")
    try:
        # The URL may hold a password: name only where it came from.
        check_state_url(
            state, f"--state (in the file {ns.state_file})" if ns.state_file else "--state"
        )
    except CatalogError as exc:
        raise ConfigError(str(exc)) from None
    if ns.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level: unknown level {ns.log_level!r}")
    return ServeConfig(
        rules=Path(ns.rules),
        listen=_address(ns.listen, "--listen"),
        state=state,
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
        watch=_flag(ns.watch),
        compile_budget=_budget(
            ns.compile_timeout, ns.compile_memory_mb, ns.compile_workers, ns.compile_queue
        ),
        idempotency_window_s=_number(ns.idempotency_window, "--idempotency-window", minimum=0),
        max_event_lateness_s=_duration(ns.max_event_lateness, "--max-event-lateness"),
        max_concurrent_rpcs=_whole(ns.max_concurrent_rpcs, "--max-concurrent-rpcs", minimum=1),
        max_streams_per_connection=_whole(
            ns.max_streams_per_connection, "--max-streams-per-connection", minimum=1
        ),
        stream_idle_timeout_s=_number(ns.stream_idle_timeout, "--stream-idle-timeout", minimum=0),
        **_delivery(ns),
    )


def _flag(text: object) -> bool:
    return str(text).lower() not in ("0", "false", "no", "off")


def _delivery(ns: argparse.Namespace) -> dict[str, Any]:
    """The delivery block of ServeConfig (kept apart from the core settings above)."""
    secrets_dir = Path(ns.state_secrets_dir) if ns.state_secrets_dir else None
    if secrets_dir is not None and not secrets_dir.is_dir():
        raise ConfigError(f"--state-secrets-dir: not a directory: {secrets_dir}")
    try:
        catalog = build_catalog(
            _repeated(ns, "--state-backend"), _repeated(ns, "--state-backend-tenants"), secrets_dir
        )
    except CatalogError as exc:
        raise ConfigError(str(exc)) from None
    from server.shutdown import drain_time

    age = _number(ns.max_connection_age, "--max-connection-age", minimum=0)
    grace = _number(ns.max_connection_age_grace, "--max-connection-age-grace", minimum=0)
    drain = str(ns.drain_timeout).strip().lower()
    drain_s = drain_time(age) if drain == "auto" else _number(drain, "--drain-timeout", minimum=0)
    return {
        "state_backends": catalog,
        "drain_s": drain_s,
        "list_child_min_bytes": _whole(ns.list_child_min_kb, "--list-child-min-kb", minimum=0)
        << 10,
        "watch_poll_ms": int(_number(ns.watch_poll_ms, "--watch-poll-ms", minimum=0)),
        "health_listen": _address(ns.health_listen, "--health-listen") if ns.health_listen else "",
        "max_connection_age_s": age,
        "max_connection_age_grace_s": grace,
        "bundle": _bundle(ns) if ns.bundle or ns.bundle_file else None,
    }


def _bundle(ns: argparse.Namespace) -> BundleConfig:
    import tempfile

    from server.bundle import oci
    from server.bundle.remote import check_url

    if ns.bundle and ns.bundle_file:
        raise ConfigError("give --bundle or --bundle-file, not both")
    url_file = Path(ns.bundle_file) if ns.bundle_file else None
    url = _read_secret(ns.bundle, ns.bundle_file, "bundle URL")
    flag = "--bundle-file" if url_file else "--bundle"
    if has_control_characters(url):
        raise ConfigError(f"{flag}: the URL holds a control character (CR, LF, NUL, ...)")
    try:
        check_url(url)
    except ValueError as exc:
        # Never quoted: the URL may hold credentials.
        raise ConfigError(f"{flag}: {exc}") from None
    try:
        realm_hosts = oci.parse_realm_hosts(ns.bundle_token_realm_hosts.split(","))
    except ValueError as exc:
        raise ConfigError(f"--bundle-token-realm-hosts: {exc}") from None
    keys = tuple(Path(p) for p in ns.bundle_public_key.split(",") if p)
    keyring = Path(ns.bundle_keyring) if ns.bundle_keyring else None
    unsigned = _flag(ns.bundle_allow_unsigned)
    if not keys and keyring is None and not unsigned:
        raise ConfigError(
            "--bundle needs --bundle-public-key or --bundle-keyring to verify signatures "
            "(or --bundle-allow-unsigned true to accept any bundle the URL serves)"
        )
    for p in keys:
        if not p.is_file():
            raise ConfigError(f"--bundle-public-key: file not found: {p}")
    if keyring is not None and not keyring.is_dir():
        raise ConfigError(f"--bundle-keyring: not a directory: {keyring}")
    if keys or keyring is not None:
        from server.bundle.signing import Keyring, SignatureError

        try:
            Keyring.load(keys, keyring)
        except SignatureError as exc:
            raise ConfigError(f"bundle keys: {exc}") from None
    ca = Path(ns.bundle_ca) if ns.bundle_ca else None
    if ca is not None and not ca.is_file():
        raise ConfigError(f"--bundle-ca: file not found: {ca}")
    work = (
        Path(ns.bundle_dir) if ns.bundle_dir else Path(tempfile.gettempdir()) / "ringfence-bundle"
    )
    return BundleConfig(
        url=url,
        work_dir=work,
        public_keys=keys,
        keyring_dir=keyring,
        allow_unsigned=unsigned,
        poll_s=_number(ns.bundle_poll, "--bundle-poll", minimum=1),
        jitter_s=_number(ns.bundle_jitter, "--bundle-jitter", minimum=0),
        timeout_s=_number(ns.bundle_timeout, "--bundle-timeout", minimum=1),
        max_bytes=int(_number(ns.bundle_max_mb, "--bundle-max-mb", minimum=1)) << 20,
        max_unpacked_bytes=int(
            _number(ns.bundle_max_unpacked_mb, "--bundle-max-unpacked-mb", minimum=1)
        )
        << 20,
        ca_file=ca,
        token=_read_secret("", ns.bundle_token_file, "bundle token"),
        url_file=url_file,
        token_file=Path(ns.bundle_token_file) if ns.bundle_token_file else None,
        token_realm_hosts=realm_hosts,
    )


def _budget(timeout: str, memory_mb: str, workers: str, queue: str) -> CompileBudget:
    return CompileBudget(
        timeout_s=_number(timeout, "--compile-timeout", minimum=0.1),
        memory_mb=_whole(memory_mb, "--compile-memory-mb", minimum=64),
        workers=_workers(workers),
        queue=_whole(queue, "--compile-queue", minimum=0),
    )


def _workers(text: str) -> int:
    if text.strip().lower() == "auto":
        return default_workers()
    try:
        return _whole(text, "--compile-workers", minimum=1)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (or 'auto': half the usable CPUs)") from None


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
