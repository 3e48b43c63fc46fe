"""What a tenant's lists hold: label names read by rules exist in the file's header, and
rows leave the list the day after their `expires` date, at a reload or by themselves."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_helpers import ringfence

from server.bundle.load import BundleError, load_bundle
from server.bundle.registry import TenantRegistry
from server.phone import PhoneParser

PARSER = PhoneParser()
POLICY = """\
list privacy from "lists/privacy.csv"
rule listed {{
    when phone in privacy and privacy.label("{label}") == "risk2"
    then review
}}
"""


def tenant(root: Path, label: str = "risk", rows: str = "+8617000000001,risk2,\n") -> Path:
    folder = root / "acme"
    (folder / "lists").mkdir(parents=True, exist_ok=True)
    (folder / "policy.rf").write_text(POLICY.format(label=label))
    (folder / "lists" / "privacy.csv").write_text("entry,risk,expires\n" + rows)
    return root


def test_a_label_missing_from_the_header_fails_the_load(tmp_path: Path) -> None:
    root = tenant(tmp_path, label="risks")
    with pytest.raises(BundleError) as info:
        load_bundle(root, "acme", PARSER)
    (message,) = info.value.messages
    assert message.startswith(
        "acme/policy.rf:3:45: error: list 'privacy' has no label column 'risks';"
        " did you mean 'risk'?"
    )


def test_check_and_rule_tests_name_the_bad_label(tmp_path: Path) -> None:
    root = tenant(tmp_path, label="source")
    out = ringfence("check", str(root))
    assert out.returncode == 1
    assert "list 'privacy' has no label column 'source' (its columns: risk, expires)" in out.stdout
    # Rule-test files give labels too, and are held to the same header.
    tenant(root)
    (root / "acme" / "tests").mkdir()
    (root / "acme" / "tests" / "t.toml").write_text(
        '[[case]]\nname = "labelled"\nphone = "+8617000000009"\n'
        'lists = { privacy = { risks = "risk2" } }\n[case.expect]\naction = "review"\n'
    )
    out = ringfence("test", str(root))
    assert out.returncode == 1
    assert (
        "t.toml:4:23: error: case[0] 'labelled': list 'privacy' has no label column 'risks';"
        " did you mean 'risk'?" in out.stdout
    )


def at(day: str, hour: int = 12) -> float:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=UTC).timestamp()


def test_an_expired_row_leaves_at_the_next_reload_and_by_itself(tmp_path: Path) -> None:
    root = tenant(tmp_path, rows="+8617000000001,risk2,2026-06-30\n+8617000000002,risk2,\n")
    clock = [at("2026-06-30")]
    registry = TenantRegistry(root, PARSER, clock=lambda: clock[0])
    assert registry.load_sync()[0].ok
    first = registry.get("acme")
    assert first is not None
    assert "+8617000000001" in first.lists["privacy"]  # the last day it is on the list
    # It is due again the moment the row expires: local midnight after its last day.
    assert first.refresh_at == at("2026-07-01", 0)
    assert registry.refresh_due(at("2026-06-30", 23)) == []
    clock[0] = at("2026-07-01", 0)
    assert registry.refresh_due(clock[0]) == ["acme"]
    # The file did not change, but the list it holds did: a new version without the row.
    assert registry.load_sync()[0].ok
    second = registry.get("acme")
    assert second is not None
    assert second.version != first.version
    assert "+8617000000001" not in second.lists["privacy"]
    assert "+8617000000002" in second.lists["privacy"]
    assert second.refresh_at is None  # nothing left that expires
    assert registry.refresh_due(clock[0]) == []


def test_expiry_follows_the_tenants_calendar(tmp_path: Path) -> None:
    root = tenant(tmp_path, rows="+8617000000001,risk2,2026-06-30\n")
    (root / "acme" / "tenant.toml").write_text('timezone = "Asia/Shanghai"\n')
    # 2026-06-30 17:00 UTC is already 07-01 01:00 in Shanghai: the row has expired there.
    bundle = load_bundle(root, "acme", PARSER, now=at("2026-06-30", 17))
    assert "+8617000000001" not in bundle.lists["privacy"]
