"""``ringfence replay`` as text: the outcome tables and what changed, in a golden file; the
install hints a checkout needs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from cli_helpers import GOLDEN, no_traceback, ringfence
from dsl_helpers import check_golden

from server.cli.replay import install_hint

POLICY = """
rule shop_signup {
    when event.scene == "register" and event.app_id == "shop"
    then review
}
rule night_app {
    when event.app_id == "night"
    then block
}
"""
# The candidate blocks shop sign-ups (review -> block) and adds a rule to a block that
# stays a block (a change of rules only).
CANDIDATE = POLICY.replace("then review", "then block") + (
    'rule night_register {\n    when event.app_id == "night" and event.scene == "register"\n'
    "    then block\n}\n"
)
EVENTS = [
    ("register", "shop", "fraud"),
    ("register", "shop", "good"),
    ("register", "night", "fraud"),
    ("login", "shop", "good"),
    ("register", "other", "fraud"),
]


def test_outcomes_and_changes_as_text(tmp_path: Path) -> None:
    for name, text in (("rules", POLICY), ("candidate", CANDIDATE)):
        (tmp_path / name / "t").mkdir(parents=True)
        (tmp_path / name / "t" / "policy.rf").write_text(text)
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "tenant": "t",
                    "request_id": f"r{i}",
                    "phone_number": f"+86138000000{i:02d}",
                    "label": label,
                    "event": {"scene": scene, "app_id": app, "occurred_at": 1_772_000_000 + i},
                }
            )
            + "\n"
            for i, (scene, app, label) in enumerate(EVENTS, 1)
        )
    )
    out = ringfence(
        "replay", str(events), "--rules", str(tmp_path / "rules"),
        "--against", str(tmp_path / "candidate"),
    )  # fmt: skip
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    text = out.stdout.replace(str(tmp_path), "TMP")
    # Timing and version hashes change from run to run.
    text = re.sub(r"\(version \w+\): (\d+) events in .*", r"(version V): \1 events", text)
    check_golden(GOLDEN / "replay_outcomes_against.txt", text)


def test_the_install_hint_of_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a checkout (an editable install), pip must install the checkout's extra."""
    repo = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(repo)
    pip = Path(sys.executable).with_name("pip")
    shown = pip.relative_to(repo) if pip.is_relative_to(repo) else pip
    assert install_hint("report") == f"{shown} install -e '.[report]'"
