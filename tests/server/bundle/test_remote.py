"""``serve --bundle`` against a real nginx: updates, 304s, a download killed halfway, corrupt
and wrongly signed bundles, a tenant that does not compile; Evaluate never fails meanwhile."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import grpc
import pytest
from bundle_support import (
    PHONE,
    Keys,
    bundle_status,
    holds,
    publish,
    readyz,
    reason,
    rules,
    scrape,
    serving,
    traffic_running,
    wait_for,
    wait_revision,
)
from conftest_nginx import TOKEN, NginxServer
from support import request

from server.api import policy_pb2 as ppb


async def test_update_is_picked_up_and_unchanged_polls_get_304(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    async with serving(tmp_path, nginx.url("b.tar.gz"), keys) as (s, traffic):
        await wait_revision(s, "v1")
        assert await reason(s) == "v1"
        async with traffic_running(traffic):
            source = s.server.bundle_source
            assert source is not None
            polls = source.polls
            await wait_for(lambda: holds(source.polls >= polls + 3))
            st = await bundle_status(s)
            assert (st.revision, st.last_error) == ("v1", "")
            assert st.key_id
            assert st.etag
            assert st.last_success_at.seconds
            assert source.status.results["not_modified"] >= 3
            publish(nginx.www, rules(tmp_path / "v2", "review", "v2"), keys.key, "v2")
            await wait_revision(s, "v2")
            assert await reason(s) == "v2"
        assert set(traffic.reasons) <= {"v1", "v2"}
        metrics = await scrape(s)
        assert re.search(
            r'^ringfence_bundle_info\{key_id="\w+",.*revision="v2"\} 1\.0$', metrics, re.M
        )
        assert re.search(
            r'^ringfence_bundle_polls_total\{.*result="updated"\} 2\.0$', metrics, re.M
        )
        assert re.search(
            r"^ringfence_bundle_last_success_timestamp_seconds\{.*\} 1\.\d+e\+09$", metrics, re.M
        )
        statuses = [status for status, path in nginx.requests() if path == "/b.tar.gz"]
        # Two downloads in all; every other poll was a 304.
        assert statuses.count(200) == 2
        assert statuses.count(304) >= 3
        assert set(statuses) == {200, 304}


async def test_nginx_killed_mid_download_keeps_the_live_policy(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    async with serving(tmp_path, nginx.url("b.tar.gz", slow=True), keys) as (s, traffic):
        nginx.restart(rate="0")  # v1 at full speed
        await wait_revision(s, "v1")
        nginx.restart(rate="32k")  # v2 crawls: 1 MiB of noise at 32 KiB/s
        noise = random.Random(1).randbytes(1 << 20)
        publish(
            nginx.www,
            rules(tmp_path / "v2", "review", "v2", extra={"lists/noise.bin": noise}),
            keys.key,
            "v2",
        )
        source = s.server.bundle_source
        assert source is not None
        async with traffic_running(traffic):
            await wait_for(lambda: holds(source.status.bytes_received > 64 * 1024))
            assert source.status.downloading
            nginx.kill()
            await wait_for(lambda: holds("download failed" in source.status.last_error))
            st = await bundle_status(s)
            assert st.revision == "v1"
            assert await reason(s) == "v1"
            assert await readyz(s) == 200
            assert not (source.settings.work_dir / "download.part").exists()
            nginx.restart(rate="0")
            await wait_revision(s, "v2")
            assert await reason(s) == "v2"
            assert (await bundle_status(s)).last_error == ""
        assert set(traffic.reasons) <= {"v1", "v2"}


@pytest.mark.parametrize("damage", ["flipped bytes", "truncated", "wrong key", "unsigned"])
async def test_bad_bundles_are_refused_and_not_fetched_again(
    tmp_path: Path, nginx: NginxServer, keys: Keys, damage: str
) -> None:
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    async with serving(tmp_path, nginx.url("b.tar.gz"), keys) as (s, traffic):
        await wait_revision(s, "v1")
        async with traffic_running(traffic):
            v2 = rules(tmp_path / "v2", "review", "v2")
            key = {"wrong key": keys.other_key, "unsigned": None}.get(damage, keys.key)
            publish(nginx.www, v2, key, "v2", name="next.tar.gz")
            data = (nginx.www / "next.tar.gz").read_bytes()
            if damage == "flipped bytes":
                middle = len(data) // 2
                data = (
                    data[:middle]
                    + bytes(b ^ 0xFF for b in data[middle : middle + 16])
                    + data[middle + 16 :]
                )
            elif damage == "truncated":
                data = data[: len(data) - 40]
            tmp = nginx.www / ".b.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, nginx.www / "b.tar.gz")
            source = s.server.bundle_source
            assert source is not None
            await wait_for(lambda: holds(source.status.results["rejected"] == 1))
            st = await bundle_status(s)
            assert st.revision == "v1"
            assert st.last_error.startswith("bundle refused:"), st.last_error
            expected = {
                "flipped bytes": ("corrupt", "sha256", "CRC"),
                "truncated": ("corrupt", "not in the archive"),
                "wrong key": ("not trusted",),
                "unsigned": ("not signed",),
            }[damage]
            assert any(word in st.last_error for word in expected), st.last_error
            assert await reason(s) == "v1"
            # The refused bytes are not downloaded again: later polls are 304s.
            polls = source.polls
            await wait_for(lambda: holds(source.polls >= polls + 3))
            assert source.status.results["rejected"] == 1
            assert (await bundle_status(s)).last_error.startswith("bundle refused:")
            # A good bundle replaces it.
            publish(nginx.www, v2, keys.key, "v2")
            await wait_revision(s, "v2")
            assert await reason(s) == "v2"
        statuses = [status for status, path in nginx.requests() if path == "/b.tar.gz"]
        assert statuses.count(200) == 3  # v1, the bad one, v2


async def test_a_tenant_that_does_not_compile_keeps_its_last_good_policy(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    v1 = rules(tmp_path / "v1", "block", "v1")
    publish(nginx.www, v1, keys.key, "v1")
    async with serving(tmp_path, nginx.url("b.tar.gz"), keys) as (s, traffic):
        await wait_revision(s, "v1")
        async with traffic_running(traffic):
            v2 = rules(tmp_path / "v2", "review", "v2")
            (v2 / "acme" / "policy.rf").write_text("rule x {\n  when ???\n}\n")
            publish(nginx.www, v2, keys.key, "v2")  # signed but broken (built --no-check)
            await wait_revision(s, "v2")
            st = await bundle_status(s)
            assert "acme" in st.last_error
            assert await reason(s) == "v1"
            status = await s.policies.GetPolicyStatus(
                ppb.GetPolicyStatusRequest(tenant="acme"), timeout=5
            )
            assert "acme/policy.rf:2:" in status.tenants[0].last_error


async def test_not_ready_until_the_first_bundle_arrives(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    async with serving(tmp_path, nginx.url("b.tar.gz"), keys, poll_s=0.2) as (s, _):
        source = s.server.bundle_source
        assert source is not None
        await wait_for(lambda: holds(source.status.results["error"] >= 1))
        assert "HTTP 404" in (await bundle_status(s)).last_error
        assert await readyz(s) == 503
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.decisions.Evaluate(request(PHONE, tenant="acme"), timeout=5)
        # Not "unknown tenant" (which a caller must not retry): the server has none yet.
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no policy is loaded yet" in info.value.details()
        publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
        await wait_revision(s, "v1")
        assert await readyz(s) == 200
        assert await reason(s) == "v1"


async def test_a_private_bundle_server_gets_the_bearer_token(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    url = nginx.url("b.tar.gz", private=True)
    async with serving(tmp_path / "without", url, keys) as (s, _):
        source = s.server.bundle_source
        assert source is not None
        await wait_for(lambda: holds(source.status.results["error"] >= 1))
        assert "HTTP 401" in (await bundle_status(s)).last_error
    async with serving(tmp_path / "with", url + "?sig=SECRET", keys, token=TOKEN) as (s, _):
        await wait_revision(s, "v1")
        st = await bundle_status(s)
        assert "SECRET" not in st.source  # presigned queries are never shown
        assert st.source == url


async def test_an_outage_of_the_bundle_server_clears_once_it_answers_again(
    tmp_path: Path, nginx: NginxServer, keys: Keys
) -> None:
    publish(nginx.www, rules(tmp_path / "v1", "block", "v1"), keys.key, "v1")
    async with serving(tmp_path, nginx.url("b.tar.gz"), keys) as (s, traffic):
        await wait_revision(s, "v1")
        source = s.server.bundle_source
        assert source is not None
        async with traffic_running(traffic):
            nginx.kill()
            await wait_for(lambda: holds("download failed" in source.status.last_error))
            nginx.restart()
            # The same bundle, answered with a 304: current again, error gone.
            await wait_for(lambda: holds(source.status.last_error == ""))
            assert (await bundle_status(s)).revision == "v1"
        assert set(traffic.reasons) == {"v1"}
