"""Per-tenant operational settings: ``rules/<tenant>/tenant.toml``.

Policy *logic* lives in the ``.rf`` files; this file holds what the tenant's owners set
within what the operator offers: how to fail when the state backend is down, the region
assumed for national-format numbers, the time zone for calendar-day windows, which of the
operator's named state backends to use, a rate limit, and the hashed bearer tokens.

    fail_mode = "open"            # "open": decide without aggregates (degraded)
                                  # "closed": answer UNAVAILABLE
    default_region = "CN"         # for numbers without a country code, when the request gives none
    timezone = "Asia/Shanghai"    # calendar days ("today") when the policy's settings name none
    state = "acme-redis"          # one of the operator's named backends (default: --state)
    [limits]
    max_rps = 500                 # per server process; beyond it: RESOURCE_EXHAUSTED
    [auth]
    tokens_sha256 = ["<hex sha256 of a token>", ...]   # empty or absent: the tenant is open
    admin_tokens_sha256 = [...]   # may add to and remove from the tenant's `from state` lists

Nothing here names a host, a file or a URL: the operator maps backend names to URLs and
decides which tenant may pick which name (``ringfence serve --state-backend``,
docs/security.md). Every error names ``path:line:col``; every number has a bound.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dsl.toml_guard import check_toml
from dsl.toml_positions import Positions, locate
from dsl.zones import zone
from server.bundle.files import MAX_CONFIG_FILE, FileRefused, read_confined, real

FILE_NAME = "tenant.toml"
# Tenant names become folder names, key prefixes and metric labels: keep them boring.
# Always used with fullmatch: `$` would let a trailing newline through.
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# A state backend's name, as the operator gives it (a flag, or a file name in the
# secrets directory, i.e. a Kubernetes Secret key) and as tenant.toml picks it.
BACKEND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Bounds: far above any real use, low enough that no value can overflow or cost anything.
MAX_RPS = 1_000_000  # per process; one process answers a few thousand a second
MAX_TOKENS = 256  # every request compares its token against each
MAX_DESCRIPTION = 2_000
_KEYS = {
    "fail_mode",
    "default_region",
    "timezone",
    "state",
    "auth",
    "limits",
    "description",
}
_LIMIT_KEYS = {"max_rps"}
_AUTH_KEYS = {"tokens_sha256", "admin_tokens_sha256"}
# What a URL in `state` looks like (the form the operator's flags take now).
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|/")


class TenantConfigError(ValueError):
    """A bad tenant.toml; the message starts with ``path:line:col:`` or ``path:``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantConfig:
    fail_mode: Literal["open", "closed"] = "open"
    default_region: str = ""
    timezone: str = ""
    state: str = ""  # empty: the server's --state; else a backend name the operator gave
    max_rps: int = 0  # 0: unlimited
    token_hashes: frozenset[str] = field(default_factory=frozenset)
    # Tokens that may change the tenant's lists kept in state (besides the operator's).
    admin_token_hashes: frozenset[str] = field(default_factory=frozenset)
    # Where `state` was written (line, column), for the server's errors about the name.
    state_place: tuple[int, int] = field(default=(0, 0), compare=False)

    @property
    def open_access(self) -> bool:
        return not self.token_hashes


def hash_token(token: str) -> str:
    """What tenant.toml stores for a token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class _Reader:
    """Typed access to the parsed document, each error at the place of its key."""

    def __init__(self, data: dict[str, object], positions: Positions, path: str) -> None:
        self.data = data
        self.positions = positions
        self.path = path

    def place(self, *keys: str) -> tuple[int, int]:
        found = self.positions.find(keys)
        if found is None:
            return (0, 0)
        return found[1].value.line, found[1].value.column

    def key_place(self, *keys: str) -> tuple[int, int]:
        found = self.positions.find(keys)
        if found is None:
            return (0, 0)
        return found[1].key.line, found[1].key.column

    def fail(self, keys: tuple[str, ...], msg: str, *, at_key: bool = False) -> TenantConfigError:
        line, col = self.key_place(*keys) if at_key else self.place(*keys)
        where = f"{self.path}:{line}:{col}" if line else self.path
        return TenantConfigError(f"{where}: error: {msg}")

    def table(self, key: str) -> dict[str, object]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail((key,), f"[{key}] must be a table")
        return value

    def unknown(self, table: dict[str, object], known: set[str], prefix: tuple[str, ...]) -> None:
        for name in table:
            if name not in known:
                shown = f"[{prefix[0]}] setting" if prefix else "setting"
                raise self.fail(
                    (*prefix, name),
                    f"unknown {shown} {name[:60]!r} (known: {', '.join(sorted(known))})",
                    at_key=True,
                )

    def string(self, keys: tuple[str, ...], value: object, what: str) -> str:
        if not isinstance(value, str):
            raise self.fail(keys, f"{what} must be a string")
        return value


def parse_tenant_config(text: str, path: str) -> TenantConfig:
    """Raises only TenantConfigError, whatever the text (a hostile file included)."""
    excess = check_toml(text)
    if excess is not None:
        raise TenantConfigError(
            f"{path}:{excess.line}:{excess.column}: error: {excess.message}"
            " (tenant.toml holds a few flat settings)"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line L, column C)" in the message; lift it to our prefix form.
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{m.group(1)}:{m.group(2)}" if m else path
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise TenantConfigError(f"{where}: error: {msg}") from None
    except (RecursionError, ValueError, OverflowError) as exc:  # a backstop behind the guard
        raise TenantConfigError(f"{path}: error: not valid TOML ({type(exc).__name__})") from None
    r = _Reader(data, locate(text), path)
    if "state_secret" in data:
        raise r.fail(
            ("state_secret",),
            "state_secret is no longer read: the operator's backends (secret files included) "
            'are all picked by name, so write state = "NAME" instead',
            at_key=True,
        )
    r.unknown(data, _KEYS, ())

    fail_mode = data.get("fail_mode", "open")
    if fail_mode not in ("open", "closed"):
        raise r.fail(("fail_mode",), f'fail_mode must be "open" or "closed", not {fail_mode!r:.60}')
    region = r.string(("default_region",), data.get("default_region", ""), "default_region")
    if region and not re.fullmatch(r"[A-Z]{2}", region):
        raise r.fail(
            ("default_region",),
            f"default_region must be an upper-case ISO 3166-1 alpha-2 code, not {region!r:.60}",
        )
    tz = data.get("timezone", "")
    if not isinstance(tz, str):
        raise r.fail(("timezone",), 'timezone must be a string such as "Asia/Shanghai"')
    if tz and zone(tz) is None:
        raise r.fail(("timezone",), f"unknown timezone {tz[:60]!r}")
    description = r.string(("description",), data.get("description", ""), "description")
    if len(description) > MAX_DESCRIPTION:
        raise r.fail(("description",), f"description is longer than {MAX_DESCRIPTION} characters")

    state = _state(r, data)

    limits = r.table("limits")
    r.unknown(limits, _LIMIT_KEYS, ("limits",))
    max_rps = limits.get("max_rps", 0)
    if not isinstance(max_rps, int) or isinstance(max_rps, bool) or not 0 <= max_rps <= MAX_RPS:
        raise r.fail(
            ("limits", "max_rps"),
            f"[limits] max_rps must be a whole number from 0 (unlimited) to {MAX_RPS:,}",
        )

    auth = r.table("auth")
    r.unknown(auth, _AUTH_KEYS, ("auth",))
    tokens = _digests(r, auth, "tokens_sha256", path)
    admin = _digests(r, auth, "admin_tokens_sha256", path)
    return TenantConfig(
        fail_mode=fail_mode,
        default_region=region,
        timezone=tz,
        state=state,
        max_rps=max_rps,
        token_hashes=frozenset(tokens),
        admin_token_hashes=frozenset(admin),
        state_place=r.place("state") if state else (0, 0),
    )


def _digests(r: _Reader, auth: dict[str, object], key: str, path: str) -> list[str]:
    """``[auth] KEY``: a bounded list of lower-case hex SHA-256 digests."""
    tokens = auth.get(key, [])
    if not isinstance(tokens, list):
        raise r.fail(
            ("auth", key), f"[auth] {key} must be a list of lower-case hex SHA-256 digests"
        )
    if len(tokens) > MAX_TOKENS:
        raise r.fail(("auth", key), f"[auth] {key} holds more than {MAX_TOKENS} digests")
    for i, t in enumerate(tokens):
        if not (isinstance(t, str) and _HEX64.fullmatch(t)):
            found = r.positions.find(("auth", key, i))
            line, col = (found[1].value.line, found[1].value.column) if found else (0, 0)
            where = f"{path}:{line}:{col}" if line else path
            raise TenantConfigError(
                f"{where}: error: [auth] {key} must be a list of lower-case hex SHA-256"
                " digests (ringfence hash-token)"
            )
    return tokens


def _state(r: _Reader, data: dict[str, object]) -> str:
    state = data.get("state", "")
    if not isinstance(state, str):
        raise r.fail(("state",), "state must be a string: the name of a state backend")
    if state and _URL_LIKE.match(state):
        # Never quote it: the old form carried passwords.
        raise r.fail(
            ("state",),
            "state names one of the operator's state backends, not a URL: the operator sets "
            "the URL (ringfence serve --state-backend NAME=URL) and offers the name to this "
            'tenant; write state = "NAME"',
        )
    if state and not BACKEND_NAME.fullmatch(state):
        raise r.fail(
            ("state",),
            "state must be a backend name: letters, digits, '.', '_' and '-', at most 63",
        )
    return state


def load_tenant_config(folder: Path, *, inside: Path | None = None) -> tuple[TenantConfig, bytes]:
    """The config and the raw bytes (they go into the policy version hash).

    The file must really be in ``inside`` (the tenant folder's real path; default: the
    real path of ``folder``): a symlink leading elsewhere is refused unread."""
    path = folder / FILE_NAME
    if not os.path.lexists(path):
        return TenantConfig(), b""
    try:
        raw = read_confined(
            path,
            inside=inside or real(folder),
            limit=MAX_CONFIG_FILE,
            what=FILE_NAME,
            fence="the tenant folder",
        )
    except FileRefused as exc:
        raise TenantConfigError(f"{path}: error: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TenantConfigError(f"{path}: error: not UTF-8 ({exc.reason})") from None
    return parse_tenant_config(text, str(path)), raw
