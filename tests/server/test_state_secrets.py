"""State URLs from secret files: ``--state-file`` for the server's, ``state_secret`` in
tenant.toml for a tenant's own, so no password sits in a pod spec or in the rules."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from conftest_redis import RedisServer
from support import request, running_server

from server.api import decision_pb2 as pb
from server.bundle.tenant_config import TenantConfigError, parse_tenant_config
from server.config import ConfigError, add_serve_arguments, from_namespace

POLICY = """\
aggregate sent = count(per number, over 1h) where event.scene == "sms_code"

rule busy {
  when sent >= 1000
  then block
  reason "many"
}
"""


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(args))


def test_state_file_holds_the_url(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("redis://:hunter2@redis:6379/0\n")
    assert from_namespace(parse("--state-file", str(secret))).state == (
        "redis://:hunter2@redis:6379/0"
    )


def test_a_bad_state_file_is_named_but_not_quoted(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("hunter2-not-a-url")
    with pytest.raises(ConfigError) as err:
        from_namespace(parse("--state-file", str(secret)))
    assert str(secret) in str(err.value)
    assert "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot read state URL file"):
        from_namespace(parse("--state-file", str(tmp_path / "missing")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('state_secret = "../etc/passwd"', "file name in the server's --state-secrets-dir"),
        ('state_secret = "..data"', "file name in the server's --state-secrets-dir"),
        ('state_secret = "a/b"', "file name in the server's --state-secrets-dir"),
        ("state_secret = 3", "file name in the server's --state-secrets-dir"),
        ('state = "redis://x:6379/0"\nstate_secret = "acme"', "not both"),
    ],
)
def test_state_secret_names_are_plain_file_names(text: str, message: str) -> None:
    with pytest.raises(TenantConfigError, match=message):
        parse_tenant_config(text, "acme/tenant.toml")


def tenant(root: Path, name: str, toml: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "tenant.toml").write_text(toml)
    (root / name / "policy.rf").write_text(POLICY)


@pytest.mark.redis
async def test_a_tenant_state_secret_points_at_its_own_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acme-redis").write_text(redis_server.url + "\n")
    rules = tmp_path / "rules"
    tenant(rules, "acme", 'state_secret = "acme-redis"\n')
    tenant(rules, "lost", 'state_secret = "nowhere"\nfail_mode = "open"\n')
    tenant(rules, "shut", 'state_secret = "nowhere"\nfail_mode = "closed"\n')
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    # A state timeout no loaded machine misses: the test is about where counters go.
    async with running_server(rules, state_secrets_dir=secrets, state_timeout_ms=2000) as s:
        sms = pb.Event(scene="sms_code")
        resp = await s.decisions.Evaluate(request("+8613800138000", "acme", event=sms), timeout=30)
        assert not resp.degraded
        assert await client.dbsize() > 0  # the tenant's counters went to its own Redis
        # A secret that is missing is a state failure: the tenant's fail_mode applies.
        lost = await s.decisions.Evaluate(request("+8613800138000", "lost", event=sms), timeout=5)
        assert lost.degraded
        with pytest.raises(Exception, match="UNAVAILABLE"):
            await s.decisions.Evaluate(request("+8613800138000", "shut", event=sms), timeout=5)
    await client.aclose()
