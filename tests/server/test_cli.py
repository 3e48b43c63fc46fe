"""The ``ringfence`` tools risk ops run on rule folders, as subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from support import RINGFENCE

from server.bundle.tenant_config import hash_token


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RINGFENCE), *args], capture_output=True, text=True, timeout=60, input=stdin
    )


def rows(text: str) -> list[list[str]]:
    """A plain table's rows (output not to a terminal), split on runs of spaces."""
    return [line.split() for line in text.splitlines() if line.strip()]


def test_check_passes_on_the_shipped_rules(rules_copy: Path) -> None:
    out = run("check", str(rules_copy))
    assert out.returncode == 0, out.stdout + out.stderr
    assert rows(out.stdout)[0] == ["tenant", "status", "rules", "lists", "cost/budget", "version"]
    assert rows(out.stdout)[1][:2] == ["demo", "ok"]
    # The cost model's estimate of one request, against the tenant's budget.
    assert rows(out.stdout)[1][4].endswith("/1,000,000")


def test_check_reports_file_line_col_with_a_caret(rules_copy: Path) -> None:
    policy = rules_copy / "demo" / "policy.rf"
    policy.write_text(policy.read_text() + "\nrule broken {\n  when phone.vaild\n  then block\n}\n")
    out = run("check", str(rules_copy))
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if "error:" in x)
    assert line.startswith("demo/policy.rf:")
    assert "vaild" in line
    assert "did you mean 'valid'" in out.stdout
    assert "^" in out.stdout
    assert ["demo", "FAIL", "-", "-", "-", "-"] in rows(out.stdout)


def test_check_warns_of_a_time_zone_unlike_tenant_toml(rules_copy: Path) -> None:
    (rules_copy / "demo" / "tenant.toml").write_text('timezone = "Europe/Berlin"\n')
    out = run("check", str(rules_copy))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        'demo/policy.rf:3:16: warning: the policy\'s time zone "Asia/Shanghai" differs from'
        ' tenant.toml\'s "Europe/Berlin"'
    ) in out.stdout


def test_check_reports_bad_list_lines(rules_copy: Path) -> None:
    lst = rules_copy / "demo" / "lists" / "privacy_numbers.csv"
    lst.write_text(lst.read_text() + "not-a-number,risk2,x,2026-01-01,\n")
    out = run("check", str(rules_copy))
    assert out.returncode == 1
    assert "privacy_numbers.csv:" in out.stdout


def test_fmt_check_and_rewrite(rules_copy: Path) -> None:
    assert run("fmt", "--check", str(rules_copy)).returncode == 0
    policy = rules_copy / "demo" / "policy.rf"
    original = policy.read_text()
    policy.write_text(original.replace("    then block\n", "        then    block\n", 1))
    out = run("fmt", "--check", str(rules_copy))
    assert out.returncode == 1
    assert "would reformat" in out.stdout
    assert run("fmt", str(rules_copy)).returncode == 0
    assert policy.read_text() == original


def test_rule_tests_pass_and_fail_with_a_diff(rules_copy: Path) -> None:
    out = run("test", str(rules_copy))
    assert out.returncode == 0, out.stdout
    assert re.fullmatch(r"[1-9]\d* passed, 0 failed", out.stdout.splitlines()[-1])
    registration = next(r for r in rows(out.stdout) if r[1] == "tests/registration.toml")
    assert registration[0] == "demo"
    assert registration[3:] == ["0", "ok"]
    policy = rules_copy / "demo" / "policy.rf"
    policy.write_text(policy.read_text().replace("const RUN_BLOCK = 20", "const RUN_BLOCK = 30"))
    out = run("test", str(rules_copy))
    assert out.returncode == 1
    assert "FAIL" in out.stdout
    assert "expected" in out.stdout
    assert re.fullmatch(r"\d+ passed, [1-9]\d* failed", out.stdout.splitlines()[-1])


def test_eval_explains_each_rule(rules_copy: Path) -> None:
    out = run(
        "eval",
        "--rules",
        str(rules_copy),
        "--tenant",
        "demo",
        "--phone",
        "17112345678",
        "--region",
        "CN",
        "--scene",
        "register",
        "--agg",
        "segment_run_today=25",
    )
    assert out.returncode == 0, out.stderr
    assert "decision: block" in out.stdout
    assert "consecutive_numbers_block" in out.stdout
    assert "17112345678" not in out.stdout  # the number stays hidden unless asked for


@pytest.mark.parametrize("token", ["s3cret", "-"])
def test_hash_token(token: str) -> None:
    out = run("hash-token", token, stdin="s3cret\n")
    assert out.stdout.strip() == hash_token("s3cret")


def test_serve_rejects_bad_flags(tmp_path: Path) -> None:
    out = run("serve", "--rules", str(tmp_path), "--listen", "nowhere")
    assert out.returncode == 2
    assert "--listen" in out.stderr


def test_replay_reports_bad_lines_and_goes_on(tmp_path: Path, rules_copy: Path) -> None:
    events = tmp_path / "e.jsonl"
    good = {
        "tenant": "demo",
        "phone_number": "+8613800138000",
        "event": {"scene": "register", "occurred_at": 1_790_000_000},
    }
    events.write_text(json.dumps(good) + "\n{broken\n" + json.dumps(good) + "\n")
    out = run("replay", str(events), "--rules", str(rules_copy), "--json")
    assert out.returncode == 0, out.stderr
    assert f"{events}:2:" in out.stderr
    assert json.loads(out.stdout)["policy"]["events"] == 2
