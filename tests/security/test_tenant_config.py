"""tenant.toml stays inside its tenant.

Found by review, each reproduced against the server before the fix:

* ``state = "redis://any-host:port"`` made the pod connect wherever the author liked (an
  SSRF), with a percent-encoded CR/LF in the user name arriving at the socket as a command
  of its own, and ``unix://`` sockets accepted;
* ``state_secret = "beta-redis"`` sent tenant acme's traffic to beta's dedicated Redis;
* ``state = "memory://<anything>"`` made a new memory backend per name, outside every
  quota and never freed;
* ``max_rps = 1`` followed by 400 zeros passed ``check`` and made every Evaluate of the
  tenant fail INTERNAL with an OverflowError.

Now the operator names the backends and offers each to tenants; tenant.toml picks a name,
every URL is checked for control characters wherever one is accepted, and every number is
bounded with an error at ``file:line:col``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from cli_helpers import no_traceback, ringfence
from conftest_redis import RedisServer
from support import request, running_server

from server.api import decision_pb2 as pb
from server.api import policy_pb2 as ppb
from server.bundle.tenant_config import MAX_RPS, TenantConfigError, parse_tenant_config
from server.config import ConfigError, add_serve_arguments, from_namespace
from server.state import StateError, open_backend
from server.state.catalog import build_catalog
from server.state.pool import BackendPool

PASSWORD = "hunter2-canary"
SMS = pb.Event(scene="sms_code")

# What tenant authors wrote before: every form of "a URL of my choosing".
URL_FORMS = [
    f"redis://:{PASSWORD}@10.0.0.5:6379/0",
    "rediss://redis.other-team.svc:6380/0",
    "unix:///var/run/redis/redis.sock",
    "memory://my-own-store-1",
    "redis+cluster://10.0.0.5:7000,10.0.0.6:7000",
    "secret:beta-redis",
    "/var/run/redis/redis.sock",
    f"redis://a%0D%0Aset%20owned%201:{PASSWORD}@127.0.0.1:6379/0",
]


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(args))


@pytest.mark.parametrize("url", URL_FORMS)
def test_check_refuses_a_url_with_a_hint_and_never_quotes_it(tmp_path: Path, url: str) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rules", rules)
    toml = rules / "demo" / "tenant.toml"
    toml.write_text(f'fail_mode = "open"\nstate = "{url}"\n')
    out = ringfence("check", str(rules))
    no_traceback(out)
    assert out.returncode == 1
    assert f"{toml}:2:9: error: state names one of the operator's state backends" in out.stdout
    assert 'write state = "NAME"' in out.stdout
    assert PASSWORD not in out.stdout + out.stderr


def test_the_old_state_secret_key_gets_a_hint() -> None:
    with pytest.raises(TenantConfigError) as err:
        parse_tenant_config('fail_mode = "open"\nstate_secret = "beta-redis"\n', "t/tenant.toml")
    assert str(err.value).startswith("t/tenant.toml:2:1: error: state_secret is no longer read")
    assert 'write state = "NAME"' in str(err.value)


async def test_a_url_in_tenant_toml_never_reaches_the_network(rules_copy: Path) -> None:
    """The SSRF itself: a listener stands for the internal service; nothing connects."""
    connections: list[object] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read(100))
        writer.close()

    listener = await asyncio.start_server(record, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    shutil.copytree(rules_copy / "demo", rules_copy / "acme")
    (rules_copy / "acme" / "tenant.toml").write_text(
        f'state = "redis://a%0D%0Aset%20owned%201@127.0.0.1:{port}/0"\n'
    )
    async with listener, running_server(rules_copy) as s:
        status = await s.policies.GetPolicyStatus(
            ppb.GetPolicyStatusRequest(tenant="acme"), timeout=5
        )
        assert "state names one of the operator's state backends" in status.tenants[0].last_error
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.decisions.Evaluate(request("+8613800138000", "acme", event=SMS), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # no good policy, no state
        await s.decisions.Evaluate(request("+8613800138000", "demo", event=SMS), timeout=5)
    assert connections == []


@pytest.fixture
async def beta_redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_a_tenant_cannot_reach_another_tenants_backend(
    tmp_path: Path, rules_copy: Path, redis_server: RedisServer, beta_redis: aioredis.Redis
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "beta-redis").write_text(redis_server.url + "\n")
    for name in ("acme", "beta"):
        shutil.copytree(rules_copy / "demo", rules_copy / name)
    (rules_copy / "beta" / "tenant.toml").write_text('state = "beta-redis"\n')
    catalog = build_catalog([], ["beta-redis=beta"], secrets)
    async with running_server(rules_copy, state_backends=catalog) as s:
        before = await s.decisions.Evaluate(request("+8613800138000", "acme"), timeout=5)
        # acme's author points its state at beta's Redis.
        toml = rules_copy / "acme" / "tenant.toml"
        toml.write_text('fail_mode = "open"\nstate = "beta-redis"\n')
        await s.server.reload()
        status = await s.policies.GetPolicyStatus(
            ppb.GetPolicyStatusRequest(tenant="acme"), timeout=5
        )
        (acme,) = status.tenants
        assert acme.last_error.startswith(
            f"{toml}:2:9: error: state backend 'beta-redis' is not one the operator offers "
            "tenant 'acme' (it has none)"
        )
        # acme keeps its last good policy, and its traffic stays off beta's Redis.
        for i in range(5):
            r = await s.decisions.Evaluate(request(f"+861380013800{i}", "acme", event=SMS))
            assert r.policy_version == before.policy_version
            assert not r.degraded
        assert await beta_redis.dbsize() == 0
        await s.decisions.Evaluate(request("+8613800138000", "beta", event=SMS), timeout=5)
        assert await beta_redis.dbsize() > 0


def test_the_pool_checks_the_grant_on_every_use() -> None:
    """Behind the load-time check: a name not offered is a state failure, never a
    backend, and asking for names never opens new ones."""
    opened: list[str] = []

    def factory(url: str) -> object:
        opened.append(url)
        return object()

    catalog = build_catalog(
        ["beta-redis=redis://beta:6379/0", "scratch=memory://"], ["beta-redis=beta", "scratch=*"]
    )
    pool = BackendPool(object(), factory, catalog)  # type: ignore[arg-type]
    for name in ("beta-redis", "memory://x", "memory://y", "nowhere", "secret:beta-redis"):
        with pytest.raises(StateError, match="is not one the operator offers tenant 'acme'"):
            pool.backend_for("acme", name)
    assert opened == []
    assert pool.backend_for("acme", "scratch") is pool.backend_for("beta", "scratch")
    assert opened == ["memory://"]
    assert len(pool.all()) == 2


async def test_renaming_state_makes_no_new_memory_backends(rules_copy: Path) -> None:
    shutil.copytree(rules_copy / "demo", rules_copy / "acme")
    catalog = build_catalog(["scratch=memory://"], ["scratch=acme"])
    toml = rules_copy / "acme" / "tenant.toml"
    toml.write_text('state = "scratch"\n')
    async with running_server(rules_copy, state_backends=catalog) as s:
        await s.decisions.Evaluate(request("+8613800138000", "acme", event=SMS), timeout=5)
        assert s.server.backends is not None
        backends = len(s.server.backends.all())
        for name in ("memory://a", "memory://b", "store-c", "store-d"):
            toml.write_text(f'state = "{name}"\n')
            await s.server.reload()
            await s.decisions.Evaluate(request("+8613800138000", "acme", event=SMS), timeout=5)
        assert len(s.server.backends.all()) == backends == 2


@pytest.mark.parametrize(
    "url",
    [
        "redis://a%0D%0Aset%20owned%201@127.0.0.1:6379/0",  # percent-encoded, in the user name
        "redis://:pw%0aFLUSHALL@127.0.0.1:6379/0",  # in the password
        "redis://127.0.0.1:6379/0?client_name=x%0D%0Ay",  # in the query
        "redis://a\r\nb@127.0.0.1:6379/0",  # as written
        "memory://x%00",
    ],
)
def test_control_characters_are_refused_wherever_a_url_is_accepted(
    tmp_path: Path, url: str
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "b").write_text(url)
    (tmp_path / "state-url").write_text(url)
    for args in (
        ["--state", url],
        ["--state-file", str(tmp_path / "state-url")],
        ["--state-backend", f"b={url}"],
        ["--state-secrets-dir", str(secrets)],
    ):
        with pytest.raises(ConfigError, match="control character") as err:
            from_namespace(parse(*args))
        assert "owned" not in str(err.value)
    with pytest.raises(ValueError, match="control character"):
        open_backend(url, hash_key=b"k")


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("[limits]\nmax_rps = 1" + "0" * 400, "2:11"),
        (f"[limits]\nmax_rps = {MAX_RPS + 1}", "2:11"),
        ("[limits]\nmax_rps = -1", "2:11"),
        ("[limits]\nmax_rps = 1.5", "2:11"),
        ("[limits]\nmax_rps = true", "2:11"),
        ('[limits]\nmax_rps = "500"', "2:11"),
        ("[limits]\nmax_rps = inf", "2:11"),
        ("[limits]\nmax_rps = 0x7fffffffffffffff", "2:11"),
    ],
)
def test_every_number_is_bounded(text: str, place: str) -> None:
    with pytest.raises(TenantConfigError) as err:
        parse_tenant_config(text, "t/tenant.toml")
    assert str(err.value) == (
        f"t/tenant.toml:{place}: error: [limits] max_rps must be a whole number from 0 "
        f"(unlimited) to {MAX_RPS:,}"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[auth]\ntokens_sha256 = [" + ", ".join([f'"{"a" * 64}"'] * 257) + "]", "more than 256"),
        ('description = "' + "x" * 2001 + '"', "longer than 2000"),
    ],
)
def test_every_count_and_length_is_bounded(text: str, message: str) -> None:
    with pytest.raises(TenantConfigError, match=message):
        parse_tenant_config(text, "t/tenant.toml")


async def test_the_largest_rate_limit_evaluates(rules_copy: Path) -> None:
    (rules_copy / "demo" / "tenant.toml").write_text(f"[limits]\nmax_rps = {MAX_RPS}\n")
    async with running_server(rules_copy) as s:
        for _ in range(3):
            r = await s.decisions.Evaluate(request("+8613800138000"), timeout=5)
            assert r.action != pb.ACTION_UNSPECIFIED
