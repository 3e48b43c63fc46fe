from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_lsp
from lsp_support import RINGFENCE, uri
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from support import copy_rules


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """A private copy of the shipped rules/ folder, safe to edit."""
    return copy_rules(tmp_path)


async def _start(client: LanguageClient, root: Path) -> None:
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=uri(root),
            workspace_folders=[types.WorkspaceFolder(uri(root), "rules")],
        )
    )


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[RINGFENCE, "lsp", "--check-timeout", "20"])
)
async def client(lsp_client: LanguageClient, rules: Path) -> AsyncIterator[LanguageClient]:
    await _start(lsp_client, rules)
    yield lsp_client
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[RINGFENCE, "lsp", "--check-timeout", "2", "--memory-mb", "1024"]
    )
)
async def strict_client(lsp_client: LanguageClient, rules: Path) -> AsyncIterator[LanguageClient]:
    """A server with a 2 s checking budget, for slow and hostile policies."""
    await _start(lsp_client, rules)
    yield lsp_client
    await lsp_client.shutdown_session()


@pytest.fixture(scope="session")
def shared_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rules copy for tests that only read it (they may open buffers, never write)."""
    return copy_rules(tmp_path_factory.mktemp("shared"))


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[RINGFENCE, "lsp", "--check-timeout", "20"]),
    scope="session",
)
async def reader(lsp_client: LanguageClient, shared_rules: Path) -> AsyncIterator[LanguageClient]:
    """One server shared by the read-only tests (starting one costs about a second)."""
    await _start(lsp_client, shared_rules)
    yield lsp_client
    await lsp_client.shutdown_session()
