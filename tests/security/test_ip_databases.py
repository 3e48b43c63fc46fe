"""IP databases are the operator's: a tenant's folder cannot name one, cannot make the
server read one as anything, and cannot grow the server's memory of addresses.

Regression tests for the walls of docs/security.md ("Walls between tenants").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ipdb_support import write_test_dbs

from server.bundle.load import BundleError, load_bundle
from server.geo.ipdb import IpLocator
from server.phone import PhoneParser

PARSER = PhoneParser()
POLICY = 'rule r {\n  when ip.province == "CN-JS"\n  then review\n}\n'


def _tenant(root: Path, files: dict[str, str | bytes]) -> Path:
    folder = root / "t"
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "setting", ['ip_db = "/var/lib/GeoIP/GeoLite2-City.mmdb"', 'ip_dbs = ["city.mmdb"]']
)
def test_tenant_toml_cannot_name_a_database(tmp_path: Path, setting: str) -> None:
    root = _tenant(tmp_path, {"policy.rf": POLICY, "tenant.toml": setting + "\n"})
    with pytest.raises(BundleError) as err:
        load_bundle(root, "t", PARSER)
    text = err.value.text()
    assert "tenant.toml:1:1: error: unknown setting 'ip_db" in text


def test_a_database_in_the_folder_is_only_a_bad_list(tmp_path: Path) -> None:
    """A tenant that ships a .mmdb and declares it as a list gets a list error: its bytes
    are never opened as a database, and none of them is echoed."""
    city, _ = write_test_dbs(tmp_path)
    data = city.read_bytes()
    root = _tenant(
        tmp_path / "rules",
        {
            "policy.rf": 'list geo from "lists/city.mmdb"\n'
            "rule r {\n  when event.ip in geo\n  then review\n}\n",
            "lists/city.mmdb": data,
        },
    )
    with pytest.raises(BundleError) as err:
        load_bundle(root, "t", PARSER)
    text = err.value.text()
    assert "city.mmdb" in text
    assert "Changzhou" not in text
    assert "CHINANET" not in text


def test_the_memory_of_addresses_is_bounded(tmp_path: Path) -> None:
    """A flood of new addresses (from callers) costs lookups, never unbounded memory."""
    locator = IpLocator.open(write_test_dbs(tmp_path))
    locator.cache_size = 1_000
    for i in range(5_000):
        locator.facts(f"58.{i % 250}.{i // 250}.1")
        locator.facts(f"240e:3b0:{i:x}::1")
    assert len(locator._by_text) <= 1_000
    assert len(locator._by_block) <= 1_000
    locator.close()


def test_the_databases_are_shared_data_not_a_tenant_choice(tmp_path: Path) -> None:
    """Two tenants' policies read the same facts for the same address: which database
    answers is the server's setting alone."""
    root = tmp_path / "rules"
    for tenant in ("a", "b"):
        (root / tenant).mkdir(parents=True)
        (root / tenant / "policy.rf").write_text(POLICY, encoding="utf-8")
    shutil.copytree(root / "a", root / "c")
    bundles = [load_bundle(root, t, PARSER) for t in ("a", "b", "c")]
    assert all(b.policy.reads_ip for b in bundles)
    assert not any(hasattr(b.config, "ip_db") for b in bundles)
