"""Per-tenant operational settings: ``rules/<tenant>/tenant.toml``.

Policy *logic* lives in the ``.rf`` files; this file holds what SRE and the tenant's owners
set: how to fail when the state backend is down, the region assumed for national-format
numbers, the time zone for calendar-day windows, and the hashed bearer tokens.

    fail_mode = "open"            # "open": decide without aggregates (degraded)
                                  # "closed": answer UNAVAILABLE
    default_region = "CN"         # for numbers without a country code, when the request gives none
    timezone = "Asia/Shanghai"    # calendar days ("today") when the policy's settings name none
    state = "redis://host:6379/1" # this tenant's own state backend (default: the server's)
    state_secret = "acme-redis"   # or: the URL is in this file of --state-secrets-dir, so no
                                  # password sits in the rules (stored as state "secret:NAME")
    [limits]
    max_rps = 500                 # per server process; beyond it: RESOURCE_EXHAUSTED
    [auth]
    tokens_sha256 = ["<hex sha256 of a token>", ...]   # empty or absent: the tenant is open
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dsl.zones import zone
from server.bundle.files import MAX_CONFIG_FILE, FileRefused, read_confined, real

FILE_NAME = "tenant.toml"
# Tenant names become folder names, key prefixes and metric labels: keep them boring.
# Always used with fullmatch: `$` would let a trailing newline through.
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = {
    "fail_mode",
    "default_region",
    "timezone",
    "state",
    "state_secret",
    "auth",
    "limits",
    "description",
}
# A file name in the operator's secrets directory: no slashes, no dot-files, no "..".
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
SECRET_PREFIX = "secret:"
_LIMIT_KEYS = {"max_rps"}
_STATE_SCHEMES = ("memory://", "redis://", "rediss://", "unix://")
_AUTH_KEYS = {"tokens_sha256"}


class TenantConfigError(ValueError):
    """A bad tenant.toml; the message starts with ``path:line:col:`` or ``path:``."""


@dataclass(frozen=True, slots=True)
class TenantConfig:
    fail_mode: Literal["open", "closed"] = "open"
    default_region: str = ""
    timezone: str = ""
    state: str = ""  # empty: the server's --state; "secret:NAME": a file in --state-secrets-dir
    max_rps: int = 0  # 0: unlimited
    token_hashes: frozenset[str] = field(default_factory=frozenset)

    @property
    def open_access(self) -> bool:
        return not self.token_hashes


def hash_token(token: str) -> str:
    """What tenant.toml stores for a token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tenant_config(text: str, path: str) -> TenantConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line L, column C)" in the message; lift it to our prefix form.
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{m.group(1)}:{m.group(2)}" if m else path
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise TenantConfigError(f"{where}: error: {msg}") from None

    def fail(msg: str) -> TenantConfigError:
        return TenantConfigError(f"{path}: error: {msg}")

    unknown = set(data) - _KEYS
    if unknown:
        raise fail(f"unknown setting(s): {', '.join(sorted(unknown))}")
    fail_mode = data.get("fail_mode", "open")
    if fail_mode not in ("open", "closed"):
        raise fail(f'fail_mode must be "open" or "closed", not {fail_mode!r}')
    region = data.get("default_region", "")
    if not isinstance(region, str) or (region and not re.fullmatch(r"[A-Z]{2}", region)):
        raise fail(f"default_region must be an upper-case ISO 3166-1 alpha-2 code, not {region!r}")
    tz = data.get("timezone", "")
    if not isinstance(tz, str):
        raise fail('timezone must be a string such as "Asia/Shanghai"')
    if tz and zone(tz) is None:
        raise fail(f"unknown timezone {tz[:60]!r}")
    state = data.get("state", "")
    if not isinstance(state, str) or (state and not state.startswith(_STATE_SCHEMES)):
        raise fail(f"state must be memory:// or redis://HOST:PORT/DB, not {state!r}")
    secret = data.get("state_secret", "")
    if not isinstance(secret, str) or (secret and not SECRET_NAME.fullmatch(secret)):
        raise fail("state_secret must be a file name in the server's --state-secrets-dir")
    if secret and state:
        raise fail("give state or state_secret, not both")
    if secret:
        state = SECRET_PREFIX + secret
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise fail("[limits] must be a table")
    unknown = set(limits) - _LIMIT_KEYS
    if unknown:
        raise fail(f"unknown [limits] setting(s): {', '.join(sorted(unknown))}")
    max_rps = limits.get("max_rps", 0)
    if not isinstance(max_rps, int) or isinstance(max_rps, bool) or max_rps < 0:
        raise fail("[limits] max_rps must be a whole number >= 0 (0: unlimited)")
    auth = data.get("auth", {})
    if not isinstance(auth, dict):
        raise fail("[auth] must be a table")
    unknown = set(auth) - _AUTH_KEYS
    if unknown:
        raise fail(f"unknown [auth] setting(s): {', '.join(sorted(unknown))}")
    tokens = auth.get("tokens_sha256", [])
    if not isinstance(tokens, list) or not all(
        isinstance(t, str) and _HEX64.fullmatch(t) for t in tokens
    ):
        raise fail("[auth] tokens_sha256 must be a list of lower-case hex SHA-256 digests")
    return TenantConfig(
        fail_mode=fail_mode,
        default_region=region,
        timezone=tz,
        state=state,
        max_rps=max_rps,
        token_hashes=frozenset(tokens),
    )


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
