"""Fixtures of the bundle-delivery tests: signing keys and the real servers bundles come from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bundle_support import Keys, make_keys
from conftest_nginx import NginxServer, NginxUnavailable
from conftest_registry import RegistryServer, RegistryUnavailable


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxServer]:
    try:
        server = NginxServer.start(tmp_path / "nginx", tmp_path / "www")
    except NginxUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    try:
        server = RegistryServer.start(tmp_path / "registry")
    except RegistryUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()
