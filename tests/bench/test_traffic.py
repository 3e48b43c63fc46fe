"""The traffic generator's day, replayed through the demo policy: the attacks are blocked
or reviewed, the trickle stays allowed. Goes through ``ringfence replay``'s own code."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from support import RINGFENCE, RULES

from bench.traffic import generate
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser
from server.tools.replay import Replayer, parse_line


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Counter[str]]:
    parser = PhoneParser()
    registry = TenantRegistry(RULES, parser)
    assert registry.load_sync(["demo"])[0].ok
    bundle = registry.get("demo")
    assert bundle is not None
    replayer = Replayer(bundle)
    events = generate(seed=3, users=500)
    by_label: dict[str, Counter[str]] = {}

    async def run() -> None:
        for n, raw in enumerate(events, 1):
            ev = parse_line(raw, n, parser, "demo")
            d = await replayer.decide(ev)
            counter = by_label.setdefault(raw["label"], Counter())
            counter[d.action.name.lower()] += 1
            for tag in d.tags:
                counter[f"tag:{tag}"] += 1

    asyncio.run(run())
    return by_label


def test_privacy_platform_is_reviewed_then_blocked(outcomes: dict[str, Counter[str]]) -> None:
    c = outcomes["privacy_platform"]
    # At most the first hour's first 100 hits pass (registrations from the MVNO 170 block
    # are reviewed even then); above the limit it is review, and once three full hours are
    # above it (from about 03:40), block.
    assert c["allow"] <= 100
    assert c["review"] >= 300
    assert c["block"] >= 40
    assert c["tag:privacy_number"] == 450


def test_consecutive_batch_is_reviewed_then_blocked(outcomes: dict[str, Counter[str]]) -> None:
    c = outcomes["consecutive_batch"]
    assert c["allow"] == 0  # an MVNO segment at registration is reviewed from the first
    assert c["block"] == 11  # the 20th to the 30th number of the run
    assert c["review"] == 19
    assert c["tag:black_card_segment"] == 30


def test_trickle_stays_allowed(outcomes: dict[str, Counter[str]]) -> None:
    c = outcomes["trickle"]
    assert c["allow"] == 16
    assert c["review"] == c["block"] == 0
    assert c["tag:privacy_number"] == 16


def test_normal_sign_ups_pass(outcomes: dict[str, Counter[str]]) -> None:
    c = outcomes["normal"]
    total = c["allow"] + c["review"] + c["block"]
    assert c["allow"] / total > 0.99
    assert c["tag:code_farm"] == 0  # a login or two among one or two codes


def test_code_farms_are_reviewed(outcomes: dict[str, Counter[str]]) -> None:
    """The demo's code_farm rule reads two counts over the number that differ only in
    their `where` filter (codes, logins): each counts its own scene, so the rule fires on
    the numbers that only ever receive codes, from their 8th code on (5 numbers x 5)."""
    c = outcomes["code_farm"]
    assert c["tag:code_farm"] == 25
    assert c["review"] == 25
    assert c["allow"] == 35


def test_replay_cli_reads_the_generated_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in generate(seed=5, users=100)))
    out = subprocess.run(
        [str(RINGFENCE), "replay", str(path), "--rules", str(RULES), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(out.stdout)
    assert report["tenant"] == "demo"
    rules = report["policy"]["rules"]
    assert rules["consecutive_numbers_block"]["live"] >= 11  # the batch, and the platform
    assert rules["consecutive_numbers_strict"]["shadow"] >= 1
    assert report["policy"]["events"] == sum(1 for _ in path.open())


def test_replay_against_reports_the_difference(tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in generate(seed=5, users=100)))
    stricter = tmp_path / "stricter"
    shutil.copytree(RULES, stricter)
    policy = stricter / "demo" / "policy.rf"
    policy.write_text(policy.read_text().replace("const RUN_BLOCK = 20", "const RUN_BLOCK = 10"))
    out = subprocess.run(
        [
            str(RINGFENCE),
            "replay",
            str(path),
            "--rules",
            str(RULES),
            "--against",
            str(stricter),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    diff = json.loads(out.stdout)["diff"]
    # The batch's 10th to 19th numbers turn from review to block; nothing gets milder.
    assert diff["transitions"]["review->block"] >= 10
    assert not any(k.endswith("->allow") for k in diff["transitions"])
    assert len(diff["samples"]) == 10
    assert all("consecutive_numbers_block" in s["after"]["rules"] for s in diff["samples"])
