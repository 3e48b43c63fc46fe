"""Outcome-labelled replay through the real command: precision, recall, caught / missed /
false alarms, lift and what each rule alone adds, on a small file whose every number is
worked out by hand below; labels from the events and from a labels file; ``--decisions``
in JSON lines and Parquet."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from support import RINGFENCE

POLICY = """
settings {
    review_score = 30
}
aggregate hits = count(per number, over 1h)
rule register_shop {
    when event.scene == "register" and event.app_id == "shop"
    then review
}
rule night_app {
    when event.app_id == "night"
    then block
}
# An allow rule that tags: it fires, but it flags nothing.
rule tag_login {
    when event.scene == "login"
    then allow
    tags "login"
}
shadow rule any_register {
    when event.scene == "register"
    then block
}
rule scored {
    when event.device_id == "d-bad" and hits >= 1
    score 30
}
"""

# (scene, app, device, label): request ids r1..r10, one minute apart, numbers distinct.
EVENTS = [
    ("register", "shop", "d1", "fraud"),  # r1: register_shop (+any_register) -> review
    ("register", "shop", "d2", "good"),  # r2: register_shop (+any_register) -> review
    ("register", "night", "d3", "fraud"),  # r3: night_app (+any_register) -> block
    ("login", "night", "d4", "fraud"),  # r4: night_app, tag_login -> block
    ("login", "shop", "d5", "good"),  # r5: tag_login -> allow
    ("register", "other", "d6", "fraud"),  # r6: any_register (shadow) only -> allow
    ("sms_code", "shop", "d7", "good"),  # r7: nothing -> allow
    ("register", "shop", "d-bad", "fraud"),  # r8: register_shop, scored (+any_register) -> review
    ("sms_code", "other", "d-bad", "good"),  # r9: scored -> score 30 -> review
    ("login", "other", "d10", None),  # r10: tag_login -> allow; unlabelled
]

# Fraud r1 r3 r4 r6 r8 (5), good r2 r5 r7 r9 (4): the fraud share is 5/9.
# The policy reviews or blocks r1 r2 r3 r4 r8 r9: caught 4 (r1 r3 r4 r8), false alarms 2
# (r2 r9), missed 1 (r6); precision 4/6, recall 4/5, lift (4/6)/(5/9) = 1.2. It blocks r3
# r4: caught 2, precision 1, recall 2/5, lift 1.8.
# "Alone": no other live rule that flags (review, block, a positive score) fired.
EXPECTED = {
    "labelled": 9,
    "fraud": 5,
    "good": 4,
    "fraud_share": 0.5556,
    "policy": {
        "block": {
            "caught": 2,
            "missed": 3,
            "false_alarms": 0,
            "precision": 1.0,
            "recall": 0.4,
            "lift": 1.8,
        },
        "review_or_block": {
            "caught": 4,
            "missed": 1,
            "false_alarms": 2,
            "precision": 0.6667,
            "recall": 0.8,
            "lift": 1.2,
        },
    },
    "rules": {
        # r1 r8 fraud, r2 good; alone on r1 and r2 (r8 also has `scored`).
        "register_shop": {
            "caught": 2,
            "missed": 3,
            "false_alarms": 1,
            "precision": 0.6667,
            "recall": 0.4,
            "lift": 1.2,
            "alone_caught": 1,
            "alone_false_alarms": 1,
        },
        # r3 r4; alone on both (tag_login flags nothing, any_register is shadow).
        "night_app": {
            "caught": 2,
            "missed": 3,
            "false_alarms": 0,
            "precision": 1.0,
            "recall": 0.4,
            "lift": 1.8,
            "alone_caught": 2,
            "alone_false_alarms": 0,
        },
        # r4 fraud (night_app flags it too), r5 good (alone); r10 is unlabelled.
        "tag_login": {
            "caught": 1,
            "missed": 4,
            "false_alarms": 1,
            "precision": 0.5,
            "recall": 0.2,
            "lift": 0.9,
            "alone_caught": 0,
            "alone_false_alarms": 1,
        },
        # Shadow: r1 r3 r6 r8 fraud, r2 good; r6 is what it would add if made live.
        "any_register": {
            "caught": 4,
            "missed": 1,
            "false_alarms": 1,
            "precision": 0.8,
            "recall": 0.8,
            "lift": 1.44,
            "alone_caught": 1,
            "alone_false_alarms": 0,
        },
        # r8 fraud (register_shop too), r9 good (alone).
        "scored": {
            "caught": 1,
            "missed": 4,
            "false_alarms": 1,
            "precision": 0.5,
            "recall": 0.2,
            "lift": 0.9,
            "alone_caught": 0,
            "alone_false_alarms": 1,
        },
    },
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RINGFENCE), *args], capture_output=True, text=True, timeout=120, check=False
    )


def line(i: int, scene: str, app: str, device: str, label: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tenant": "t",
        "request_id": f"r{i}",
        "phone_number": f"+86138000000{i:02d}",
        "event": {
            "scene": scene,
            "app_id": app,
            "device_id": device,
            "occurred_at": 1_772_000_000 + 60 * i,
        },
    }
    if label is not None:
        out["label"] = label
    return out


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    (tmp_path / "rules" / "t").mkdir(parents=True)
    (tmp_path / "rules" / "t" / "policy.rf").write_text(POLICY, encoding="utf-8")
    return tmp_path / "rules"


def write_events(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return write_events(tmp_path / "events.jsonl", [line(i, *e) for i, e in enumerate(EVENTS, 1)])


def replay_json(*args: str) -> dict[str, Any]:
    out = run("replay", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_precision_and_recall_worked_out_by_hand(events: Path, rules: Path) -> None:
    summary = replay_json(str(events), "--rules", str(rules))
    assert summary["policy"]["outcomes"] == EXPECTED
    assert summary["labels"]["values"] == {"fraud": 5, "good": 4}


def test_the_tables_show_the_same_numbers(events: Path, rules: Path) -> None:
    out = run("replay", str(events), "--rules", str(rules))
    assert out.returncode == 0, out.stderr
    assert "caught 4 of 5 fraud (80.0%) at a cost of 2 of 4 good" in out.stdout
    rows = {r.split()[1]: r.split()[2:] for r in out.stdout.splitlines() if r.startswith("rule ")}
    # caught, missed, false alarms, precision, recall, lift, caught alone, false alarms alone
    assert rows["any_register"] == ["4", "1", "1", "0.800", "0.800", "1.440", "1", "0"]
    assert rows["night_app"] == ["2", "3", "0", "1.000", "0.400", "1.800", "2", "0"]
    assert "1 of 10 events have no outcome label" in out.stderr


def test_a_labels_file_joins_on_request_id_and_wins(
    events: Path, rules: Path, tmp_path: Path
) -> None:
    """r6 turns out good, r10 (unlabelled in the events) fraud; r99 is in no event."""
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr6,legit\nr10,chargeback\nr99,fraud\n")
    summary = replay_json(str(events), "--rules", str(rules), "--labels", str(labels))
    o = summary["policy"]["outcomes"]
    assert (o["fraud"], o["good"]) == (5, 5)
    # Caught r1 r3 r4 r8, false alarms r2 r9, missed r10; the fraud share is now 1/2.
    assert o["policy"]["review_or_block"] == {
        "caught": 4,
        "missed": 1,
        "false_alarms": 2,
        "precision": 0.6667,
        "recall": 0.8,
        "lift": 1.3333,
    }
    # any_register's r6 is now a false alarm, and the one it alone flags.
    assert o["rules"]["any_register"]["false_alarms"] == 2
    assert o["rules"]["any_register"]["alone_false_alarms"] == 1
    # tag_login's r10 is fraud now (night_app does not fire on it: alone).
    assert o["rules"]["tag_login"]["alone_caught"] == 1
    assert summary["labels"]["file"] == {"request_ids": 3, "matched": 2, "unmatched": 1}
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(
        '{"request_id": "r6", "label": "legit"}\n{"request_id": "r10", "label": true}\n'
    )
    again = replay_json(str(events), "--rules", str(rules), "--labels", str(jsonl))
    assert again["policy"]["outcomes"] == o


def test_fraud_labels_named_on_the_command_line(rules: Path, tmp_path: Path) -> None:
    """bench/traffic.py's scenario names: those named are fraud, every other label good."""
    scenarios = ["platform", "quiet", "platform", "platform", "quiet", "platform"]
    scenarios += ["quiet", "platform", "quiet", None]
    path = write_events(
        tmp_path / "e.jsonl",
        [line(i, *e[:3], s) for i, (e, s) in enumerate(zip(EVENTS, scenarios, strict=True), 1)],
    )
    out = run("replay", str(path), "--rules", str(rules), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["policy"]["outcomes"] is None
    assert "labels neither fraud nor good were left out: 'platform' (5), 'quiet' (4)" in out.stderr
    summary = replay_json(str(path), "--rules", str(rules), "--fraud-label", "platform,other")
    assert summary["policy"]["outcomes"] == EXPECTED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,label\nr1,fraud\n", "labels.csv:1: the header has no 'request_id' column"),
        ("request_id,label\nr1,fraud\nr1,good\n", "labels.csv:3: request_id 'r1' is labelled both"),
        ("request_id,label\nr1,\n", "labels.csv:2: no label for request_id 'r1'"),
    ],
)
def test_a_bad_labels_file_stops_before_replaying(
    events: Path, rules: Path, tmp_path: Path, text: str, message: str
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    out = run("replay", str(events), "--rules", str(rules), "--labels", str(labels))
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stdout == ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_decisions_one_line_per_event(events: Path, rules: Path, tmp_path: Path) -> None:
    out_path = tmp_path / "decisions.jsonl"
    out = run("replay", str(events), "--rules", str(rules), "--decisions", str(out_path))
    assert out.returncode == 0, out.stderr
    rows = read_jsonl(out_path)
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(1, 11)]
    assert [r["line"] for r in rows] == list(range(1, 11))
    r8 = rows[7]
    assert r8["action"] == "review"
    assert r8["score"] == 30
    assert r8["rules"] == ["register_shop", "scored"]
    assert r8["shadow_rules"] == ["any_register"]
    assert (r8["label"], r8["outcome"]) == ("fraud", "fraud")
    assert r8["aggregates"] == [{"id": "hits", "value": 1, "known": True}]
    assert r8["phone"] == "+8613****08"  # masked, never the number
    assert "+861380000008" not in out_path.read_text()
    assert (rows[9]["label"], rows[9]["outcome"]) == (None, None)
    assert "10 decisions written to" in out.stderr


def test_decisions_of_an_out_of_order_file_are_those_of_the_sorted_replay(
    rules: Path, tmp_path: Path
) -> None:
    """Replay streams a file in time order and starts over, sorted, at the first event
    earlier than one decided: the file then holds the sorted replay's records, once each."""
    lines = [line(i, *e) for i, e in enumerate(EVENTS, 1)]
    lines[2], lines[6] = lines[6], lines[2]  # r7 now comes third, before r3..r6
    path = write_events(tmp_path / "shuffled.jsonl", lines)
    out_path = tmp_path / "decisions.jsonl"
    args = ["replay", str(path), "--rules", str(rules), "--decisions", str(out_path), "--json"]
    for workers in ("0", "1"):
        done = subprocess.run(
            [str(RINGFENCE), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"RINGFENCE_REPLAY_WORKERS": workers, "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        rows = read_jsonl(out_path)
        assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(1, 11)]
        assert json.loads(done.stdout)["policy"]["outcomes"] == EXPECTED


def test_decisions_with_against_carry_both(events: Path, rules: Path, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate"
    (candidate / "t").mkdir(parents=True)
    (candidate / "t" / "policy.rf").write_text(POLICY.replace("shadow rule", "rule"))
    out_path = tmp_path / "decisions.jsonl"
    out = run(
        "replay", str(events), "--rules", str(rules), "--against", str(candidate),
        "--decisions", str(out_path), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = read_jsonl(out_path)
    r6 = rows[5]
    assert (r6["action"], r6["shadow_rules"]) == ("allow", ["any_register"])
    assert (r6["against"]["action"], r6["against"]["rules"]) == ("block", ["any_register"])
    assert r6["against"]["aggregates"] == r6["aggregates"]
    summary = json.loads(out.stdout)
    # Made live, any_register catches r6 too: recall 5/5, at r2 as the only false alarm
    # left... and r9 (scored alone).
    assert summary["against"]["outcomes"]["policy"]["review_or_block"]["caught"] == 5
    assert summary["against"]["outcomes"]["policy"]["review_or_block"]["recall"] == 1.0


def test_decisions_as_parquet(events: Path, rules: Path, tmp_path: Path) -> None:
    jsonl, parquet = tmp_path / "d.jsonl", tmp_path / "d.parquet"
    for path in (jsonl, parquet):
        out = run("replay", str(events), "--rules", str(rules), "--decisions", str(path))
        assert out.returncode == 0, out.stderr
    table = pq.read_table(parquet)
    assert table.num_rows == 10
    assert table.schema.field("aggregates").type.value_type.names == ["id", "value", "known"]
    assert table.to_pylist() == read_jsonl(jsonl)


def test_decisions_in_a_missing_folder_fail_before_replaying(events: Path, rules: Path) -> None:
    out = run("replay", str(events), "--rules", str(rules), "--decisions", "/nonexistent/d.jsonl")
    assert out.returncode == 2
    assert "--decisions: no such directory: /nonexistent" in out.stderr


def test_a_tenant_with_no_events_names_those_the_file_has(events: Path, rules: Path) -> None:
    (rules / "other").mkdir()
    (rules / "other" / "policy.rf").write_text(POLICY)
    out = run("replay", str(events), "--rules", str(rules), "--tenant", "other")
    assert out.returncode == 1
    assert f"no events for tenant 'other' in {events}; it has events for: t (10)" in out.stderr
    out = run("replay", str(events), "--rules", str(rules), "--tenant", "nosuch")
    assert out.returncode == 1
    assert f"no tenant folder 'nosuch' in {rules} (tenants there: other, t)" in out.stderr
