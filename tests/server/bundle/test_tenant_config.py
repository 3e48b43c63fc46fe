from __future__ import annotations

import pytest

from server.bundle.tenant_config import TenantConfigError, hash_token, parse_tenant_config

GOOD_HASH = hash_token("t")


def test_defaults_and_full_config() -> None:
    assert parse_tenant_config("", "x/tenant.toml").open_access
    cfg = parse_tenant_config(
        f'fail_mode = "closed"\ndefault_region = "CN"\ntimezone = "Asia/Shanghai"\n'
        f'[auth]\ntokens_sha256 = ["{GOOD_HASH}"]\n',
        "x/tenant.toml",
    )
    assert cfg.fail_mode == "closed"
    assert cfg.default_region == "CN"
    assert cfg.timezone == "Asia/Shanghai"
    assert cfg.token_hashes == {GOOD_HASH}
    assert not cfg.open_access


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('fail_mode = "sideways"', "x/tenant.toml:1:13: error: fail_mode must be"),
        ('default_region = "cn"', "default_region must be an upper-case"),
        ('timezone = "Mars/Olympus"', "unknown timezone 'Mars/Olympus'"),
        ("color = 1", "x/tenant.toml:1:1: error: unknown setting 'color'"),
        ("[auth]\ntokens = []", "x/tenant.toml:2:1: error: unknown [auth] setting 'tokens'"),
        ('[auth]\ntokens_sha256 = ["plain-token"]', "lower-case hex SHA-256"),
        ('fail_mode = "open"\nfail_mode = "closed"', "Cannot overwrite a value"),
        ("fail_mode = \n", "x/tenant.toml:1:"),
        ("[auth\nx = 1", "x/tenant.toml:1:"),
    ],
)
def test_bad_config_names_file_and_problem(text: str, message: str) -> None:
    with pytest.raises(TenantConfigError) as info:
        parse_tenant_config(text, "x/tenant.toml")
    assert message in str(info.value)


def test_limits_and_state() -> None:
    cfg = parse_tenant_config('state = "acme-redis"\n[limits]\nmax_rps = 250\n', "x/tenant.toml")
    assert cfg.state == "acme-redis"
    assert cfg.state_place == (1, 9)
    assert cfg.max_rps == 250
    for bad in ('state = "mysql://x"', "[limits]\nmax_rps = -1", "[limits]\nburst = 3"):
        with pytest.raises(TenantConfigError):
            parse_tenant_config(bad, "x/tenant.toml")


@pytest.mark.parametrize(
    "name",
    ["America", "Europe/", "x" * 300, "../../../etc/passwd", "Asia/Shanghai\\u0000", "UTC/../UTC"],
    ids=["a-folder", "trailing-slash", "too-long", "dot-dot", "nul", "dot-dot-inside"],
)
def test_odd_timezone_names_are_unknown_not_crashes(name: str) -> None:
    # Folders and over-long names once raised IsADirectoryError / OSError with a path.
    with pytest.raises(TenantConfigError) as caught:
        parse_tenant_config(f'timezone = "{name}"\n', "x/tenant.toml")
    assert "unknown timezone" in str(caught.value)
    assert len(str(caught.value)) < 120
