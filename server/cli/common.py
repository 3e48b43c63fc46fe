"""What several subcommands share: a tenant registry over a rules folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.bundle.registry import TenantRegistry


def registry(rules: Path, segments: str | None = None) -> TenantRegistry:
    from server.bundle.registry import TenantRegistry
    from server.phone import PhoneParser, SegmentTable

    return TenantRegistry(rules, PhoneParser(SegmentTable.load(segments or None)))


def tenants(reg: TenantRegistry, only: str | None) -> list[str]:
    names = reg.discover()
    if only:
        if only not in names:
            raise SystemExit(f"ringfence: no tenant folder {only!r} in {reg.root}")
        return [only]
    return names
