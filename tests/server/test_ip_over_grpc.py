"""Where a number lives and where the request comes from, through Evaluate: a real
`ringfence serve --ip-db city.mmdb --ip-db asn.mmdb` (databases built by the test) deciding
a policy that compares phone.province with ip.province, counts per ip/24 and checks a
list of data-centre ranges; the variable form, start-up errors and reloading."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import grpc
import pytest
from ipdb_support import CITY_NETWORKS, write_city_db, write_test_dbs
from support import RINGFENCE, request, running_server, server_process, wait_serving

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc

POLICY = """\
list datacentres from "lists/datacentres.csv"

aggregate signups_per_24 = count(per ip/24, over 1h) where event.scene == "register"
aggregate signups_per_64 = count(per ip/64, over 1h) where event.scene == "register"
aggregate cities_per_number = distinct(ip.city, per number, over 1d)

rule home_province_differs {
    when event.scene == "register"
        and phone.province != ""
        and ip.province != ""
        and phone.province != ip.province
    then review
    tags "location_mismatch"
    reason "number from {phone.province_name}, request from {ip.province_name}"
}

rule datacentre_ip {
    when event.ip in datacentres
    then block
    tags "datacentre"
    reason "{datacentres.label("provider")} {datacentres.label("kind")} range, AS{ip.asn}"
}

rule busy_network {
    when signups_per_24 > 3 or signups_per_64 > 3
    then review
    tags "busy_network"
    reason "{signups_per_24} sign-ups from this /24 in an hour"
}

rule many_cities {
    when cities_per_number >= 3
    then review
    tags "many_cities"
}
"""

DATACENTRES = """\
entry,kind,provider
119.29.0.0/16,idc,tencent
2402:4e00::/32,idc,tencent
"""

CHANGZHOU_NUMBER = "+8613912345678"  # a Changzhou (Jiangsu) mobile number
BEIJING_NUMBER = "+8613800138000"


@pytest.fixture(scope="module")
def geo_rules(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("geo")
    rules = root / "rules"
    (rules / "geo" / "lists").mkdir(parents=True)
    (rules / "geo" / "policy.rf").write_text(POLICY, encoding="utf-8")
    (rules / "geo" / "lists" / "datacentres.csv").write_text(DATACENTRES, encoding="utf-8")
    city, asn = write_test_dbs(root)
    return rules, city, asn


def _evaluate(
    stub: pb_grpc.DecisionServiceStub, number: str, ip: str, scene: str = "register"
) -> pb.EvaluateResponse:
    req = request(number, tenant="geo", event=pb.Event(scene=scene, ip=ip, app_id="shop"))
    return stub.Evaluate(req, timeout=10)  # type: ignore[no-any-return]


def test_serve_with_two_ip_databases(geo_rules: tuple[Path, Path, Path]) -> None:
    rules, city, asn = geo_rules
    with server_process(rules, "--ip-db", str(city), "--ip-db", str(asn)) as srv:
        wait_serving(srv.address)
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.DecisionServiceStub(ch)

            # A Changzhou number from a Changzhou address: nothing to say.
            home = _evaluate(stub, CHANGZHOU_NUMBER, "58.216.1.2")
            assert home.action == pb.ACTION_ALLOW
            assert (home.phone.province, home.phone.city) == ("CN-JS", "常州")
            assert (home.ip.version, home.ip.country, home.ip.province, home.ip.city) == (
                4, "CN", "CN-JS", "常州"
            )  # fmt: skip
            assert (home.ip.asn, home.ip.org) == (4134, "CHINANET-BACKBONE")

            # A Beijing number registering from Jiangsu.
            away = _evaluate(stub, BEIJING_NUMBER, "58.216.1.3")
            assert away.action == pb.ACTION_REVIEW
            assert list(away.tags) == ["location_mismatch"]
            assert away.matches[0].reason == "number from 北京市, request from 江苏省"

            # Anything from a data-centre range, IPv4 or IPv6.
            idc = _evaluate(stub, CHANGZHOU_NUMBER, "119.29.7.1", scene="login")
            assert idc.action == pb.ACTION_BLOCK
            assert [m.reason for m in idc.matches] == ["tencent idc range, AS45090"]
            idc6 = _evaluate(stub, CHANGZHOU_NUMBER, "2402:4e00:1::8", scene="login")
            assert idc6.action == pb.ACTION_BLOCK

            # Sign-ups per /24: four different addresses of one /24 within the hour.
            numbers = [f"+86139123400{i:02d}" for i in range(4)]
            answers = [_evaluate(stub, n, f"58.216.9.{10 + i}") for i, n in enumerate(numbers)]
            assert [a.action for a in answers] == [pb.ACTION_ALLOW] * 3 + [pb.ACTION_REVIEW]
            assert answers[-1].matches[0].reason == "4 sign-ups from this /24 in an hour"
            # Another /24 of the same /16 is another count.
            other = _evaluate(stub, "+8613912340099", "58.216.10.1")
            assert other.action == pb.ACTION_ALLOW

            # ... and per /64 for IPv6.
            sixes = [_evaluate(stub, n, f"240e:3b0:7:8::{i + 1}") for i, n in enumerate(numbers)]
            assert [a.action for a in sixes] == [pb.ACTION_ALLOW] * 3 + [pb.ACTION_REVIEW]
            assert sixes[0].ip.version == 6

            # One number seen from three cities in a day.
            roaming = [
                _evaluate(stub, "+8613912345000", ip, scene="login")
                for ip in ("58.216.3.3", "123.112.3.3", "8.8.8.8")
            ]
            assert [list(r.tags) for r in roaming] == [[], [], ["many_cities"]]


def test_the_variable_names_databases_colon_separated(geo_rules: tuple[Path, Path, Path]) -> None:
    rules, city, asn = geo_rules
    with server_process(rules, env={"RINGFENCE_IP_DB": f"{city}:{asn}"}) as srv:
        wait_serving(srv.address)
        with grpc.insecure_channel(srv.address) as ch:
            resp = _evaluate(pb_grpc.DecisionServiceStub(ch), CHANGZHOU_NUMBER, "58.216.1.2")
            assert (resp.ip.province, resp.ip.asn) == ("CN-JS", 4134)


def test_without_databases_locations_are_empty(geo_rules: tuple[Path, Path, Path]) -> None:
    """No database: ip.* are "" and 0 (the mismatch rule cannot fire), networks still
    count and data-centre lists still match."""
    rules, _, _ = geo_rules
    with server_process(rules) as srv:
        wait_serving(srv.address)
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.DecisionServiceStub(ch)
            away = _evaluate(stub, BEIJING_NUMBER, "58.216.1.3")
            assert away.action == pb.ACTION_ALLOW
            assert (away.ip.version, away.ip.province, away.ip.asn) == (4, "", 0)
            assert _evaluate(stub, BEIJING_NUMBER, "119.29.1.1").action == pb.ACTION_BLOCK


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"this is not a database", "not a MaxMind DB (.mmdb) file"),
    ],
)
def test_a_missing_or_corrupt_database_stops_the_start(
    geo_rules: tuple[Path, Path, Path], tmp_path: Path, content: bytes | None, message: str
) -> None:
    rules, city, _ = geo_rules
    bad = tmp_path / "asn.mmdb"
    if content is not None:
        bad.write_bytes(content)
    done = subprocess.run(
        [
            str(RINGFENCE),
            "serve",
            "--rules",
            str(rules),
            "--listen",
            "127.0.0.1:0",
            "--ip-db",
            str(city),
            "--ip-db",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"ringfence serve: --ip-db {bad}: {message}")


async def test_a_replaced_database_is_picked_up(
    geo_rules: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    rules, _, asn = geo_rules
    city = write_city_db(tmp_path / "city.mmdb", CITY_NETWORKS)
    async with running_server(rules, ip_dbs=(city, asn), ip_db_poll_s=0.1) as srv:
        event = pb.Event(scene="register", ip="58.216.1.3")
        req = request(BEIJING_NUMBER, tenant="geo", event=event, dry_run=True)
        first = await srv.decisions.Evaluate(req, timeout=10)
        assert (first.ip.province, first.action) == ("CN-JS", pb.ACTION_REVIEW)
        # The weekly update: 58.216.0.0/16 now places in Beijing.
        fresh = write_city_db(
            tmp_path / "city.tmp", {"58.216.0.0/16": CITY_NETWORKS["123.112.0.0/16"]}
        )
        os.replace(fresh, city)
        for _ in range(200):  # a generous cap: the check runs every 0.1 s
            later = await srv.decisions.Evaluate(req, timeout=10)
            if later.ip.province == "CN-BJ":
                break
            await asyncio.sleep(0.05)
        assert (later.ip.province, later.action) == ("CN-BJ", pb.ACTION_ALLOW)


async def test_the_decision_log_keeps_where_and_replay_uses_it(
    geo_rules: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A decision-log line records the number's home, the IP facts the decision read and
    the network-list entry; replaying the log without any database decides the same."""
    import json

    from cli_helpers import ringfence

    rules, city, asn = geo_rules
    log = tmp_path / "decisions.jsonl"
    async with running_server(rules, ip_dbs=(city, asn), decision_log=str(log)) as srv:
        for number, ip in ((BEIJING_NUMBER, "58.216.1.3"), (CHANGZHOU_NUMBER, "119.29.7.1")):
            event = pb.Event(scene="register", ip=ip)
            req = request(number, tenant="geo", event=event, request_id=f"r-{ip}")
            await srv.decisions.Evaluate(req, timeout=10)
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    away, idc = lines
    assert (away["phone"]["province"], away["phone"]["city"]) == ("CN-BJ", "北京")
    assert away["ip"]["province"] == "CN-JS"
    assert idc["ip"]["asn"] == 45090
    assert idc["lists"] == {"datacentres": {"kind": "idc", "provider": "tencent"}}
    assert away["decision"]["action"] == "review"
    assert idc["decision"]["action"] == "block"
    done = ringfence("replay", str(log), "--rules", str(rules), "--tenant", "geo", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["policy"]["actions"] == {"review": 1, "block": 1}
