"""Fixtures of the bundle-delivery tests: signing keys and the real servers bundles come from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import processes
import pytest
from bundle_support import Keys, make_keys
from conftest_nginx import NginxServer, NginxUnavailable
from conftest_registry import RegistryServer, RegistryUnavailable


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxServer]:
    with processes.running(
        lambda: NginxServer.start(tmp_path / "nginx", tmp_path / "www"), NginxUnavailable
    ) as server:
        yield server


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with processes.running(
        lambda: RegistryServer.start(tmp_path / "registry"), RegistryUnavailable
    ) as server:
        yield server
