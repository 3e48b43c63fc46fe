"""State URLs are the operator's: ``--state`` / ``--state-file`` for the default backend,
``--state-backend NAME=URL`` and the files of ``--state-secrets-dir`` for named ones, and
``--state-backend-tenants`` for who may pick which; tenant.toml only names one."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from conftest_redis import RedisServer
from support import request, running_server

from server.api import decision_pb2 as pb
from server.api import policy_pb2 as ppb
from server.config import ConfigError, add_serve_arguments, from_namespace
from server.state.catalog import build_catalog

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


def test_named_backends_from_flags_files_and_grants(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acme-redis").write_text("redis://:hunter2@acme-redis:6379/0\n")
    (secrets / "..data").mkdir()  # a mounted Secret's own entries are not backends
    cfg = from_namespace(
        parse(
            "--state-backend",
            "scratch=memory://",
            "--state-backend",
            "shared=redis://shared:6379/3",
            "--state-secrets-dir",
            str(secrets),
            "--state-backend-tenants",
            "acme-redis=acme",
            "--state-backend-tenants",
            "shared=*",
        )
    )
    catalog = cfg.state_backends
    assert sorted(catalog.backends) == ["acme-redis", "scratch", "shared"]
    assert catalog.backends["acme-redis"].url == "redis://:hunter2@acme-redis:6379/0"
    assert "hunter2" not in repr(catalog)
    assert catalog.names_for("acme") == ["acme-redis", "shared"]
    assert catalog.names_for("beta") == ["shared"]
    assert catalog.unused() == ["scratch"]
    assert catalog.refusal("acme", "acme-redis") is None
    assert "not one the operator offers tenant 'beta'" in str(catalog.refusal("beta", "acme-redis"))


def test_the_variables_hold_several_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "RINGFENCE_STATE_BACKENDS", "a=redis://a:6379/0 b=redis+cluster://b1:7000,b2:7000"
    )
    monkeypatch.setenv("RINGFENCE_STATE_BACKEND_TENANTS", "a=acme,beta b=*")
    catalog = from_namespace(parse()).state_backends
    assert catalog.names_for("acme") == ["a", "b"]
    assert catalog.names_for("gamma") == ["b"]
    # A flag replaces its variable (and the grants still in theirs must then fit).
    with pytest.raises(ConfigError, match="no state backend is named 'a'"):
        from_namespace(parse("--state-backend", "c=memory://"))
    only = from_namespace(
        parse("--state-backend", "c=memory://", "--state-backend-tenants", "c=acme")
    ).state_backends
    assert only.names_for("acme") == ["c"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state-backend", "noequals"], "expected NAME=URL"),
        (["--state-backend", "../x=redis://h:1/0"], "is not a backend name"),
        (["--state-backend", "x=mysql://h/db"], "expected memory://"),
        (["--state-backend", "x=memory://", "--state-backend", "x=memory://"], "given twice"),
        (["--state-backend-tenants", "ghost=acme"], "no state backend is named 'ghost'"),
        (["--state-backend", "x=memory://", "--state-backend-tenants", "x"], "NAME=TENANT"),
        (
            ["--state-backend", "x=memory://", "--state-backend-tenants", "x=Not A Tenant"],
            "is not a tenant name",
        ),
        (["--state", "mysql://x"], "--state: expected memory://"),
    ],
)
def test_operator_mistakes_stop_the_start(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_namespace(parse(*args))


def test_secret_files_are_checked_at_start_and_never_quoted(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acme-redis").write_text("hunter2-not-a-url")
    with pytest.raises(ConfigError) as err:
        from_namespace(parse("--state-secrets-dir", str(secrets)))
    assert str(secrets / "acme-redis") in str(err.value)
    assert "hunter2" not in str(err.value)
    (secrets / "acme-redis").write_text("redis://h:1/0")
    (secrets / "acme-redis-too").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        from_namespace(parse("--state-secrets-dir", str(secrets)))
    with pytest.raises(ConfigError, match="not a directory"):
        from_namespace(parse("--state-secrets-dir", str(tmp_path / "missing")))


def tenant(root: Path, name: str, toml: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "tenant.toml").write_text(toml)
    (root / name / "policy.rf").write_text(POLICY)


@pytest.mark.redis
async def test_a_tenant_picks_its_own_redis_by_name(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acme-redis").write_text(redis_server.url + "\n")
    rules = tmp_path / "rules"
    tenant(rules, "acme", 'state = "acme-redis"\n')
    tenant(rules, "shut", 'state = "down"\nfail_mode = "closed"\n')
    tenant(rules, "lost", 'state = "nowhere"\n')
    catalog = build_catalog(
        ["down=redis://127.0.0.1:1/0"], ["acme-redis=acme", "down=shut"], secrets
    )
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    # A state timeout no loaded machine misses: the test is about where counters go.
    async with running_server(rules, state_backends=catalog, state_timeout_ms=2000) as s:
        sms = pb.Event(scene="sms_code")
        resp = await s.decisions.Evaluate(request("+8613800138000", "acme", event=sms), timeout=30)
        assert not resp.degraded
        assert await client.dbsize() > 0  # the tenant's counters went to its own Redis
        # A backend that is down is a state failure: the tenant's fail_mode applies.
        with pytest.raises(Exception, match="UNAVAILABLE"):
            await s.decisions.Evaluate(request("+8613800138000", "shut", event=sms), timeout=5)
        # A name the operator never gave is a policy error: the tenant does not load.
        st = await s.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(tenant="lost"), timeout=5)
        assert f"{rules / 'lost' / 'tenant.toml'}:1:9: error: state backend 'nowhere'" in (
            st.tenants[0].last_error
        )
    await client.aclose()
