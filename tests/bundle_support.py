"""What the bundle-delivery tests share: signing keys, rules folders, a server pulling a
bundle, Evaluate traffic that must never fail, and polling for what the server reports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from support import Running, request, running_server

from server.api import policy_pb2 as ppb
from server.bundle.archive import build, manifest_for
from server.bundle.signing import generate, load_private_key
from server.config import BundleConfig

POLICY = """\
rule invalid_numbers {{
  when not phone.valid
  then {action}
  reason "{reason}"
}}
"""
PHONE = "+86 123"  # parses, not valid: the rule above fires


@dataclass
class Keys:
    key: Path
    pub: Path
    other_key: Path


def make_keys(tmp_path: Path) -> Keys:
    out = []
    for name in ("good", "other"):
        private, public = generate("ed25519")
        (tmp_path / f"{name}.key").write_bytes(private)
        (tmp_path / f"{name}.pub.pem").write_bytes(public)
        out.append(tmp_path / name)
    return Keys(
        out[0].with_suffix(".key"), out[0].with_suffix(".pub.pem"), out[1].with_suffix(".key")
    )


def rules(root: Path, action: str, reason: str, *, extra: dict[str, bytes] | None = None) -> Path:
    folder = root / "acme"
    folder.mkdir(parents=True)
    (folder / "policy.rf").write_text(POLICY.format(action=action, reason=reason))
    for name, data in (extra or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return root


def publish(www: Path, root: Path, key: Path | None, revision: str, name: str = "b.tar.gz") -> None:
    """Build the bundle beside its final name and rename it into place, as CI would."""
    tmp = www / f".{name}.tmp"
    with tmp.open("wb") as fh:
        build(
            root,
            fh,
            manifest=manifest_for(root, revision=revision),
            key=load_private_key(key) if key else None,
        )
    # nginx's ETag is the size and the mtime in whole seconds: two bundles of one size
    # published within a second would look the same to a poller. Each gets a second of
    # its own, as publications minutes apart would.
    global _last_mtime
    _last_mtime = max(int(time.time()), _last_mtime + 1)
    os.utime(tmp, (_last_mtime, _last_mtime))
    os.replace(tmp, www / name)


_last_mtime = 0


@dataclass
class Traffic:
    """Evaluate in a loop for the whole test: every call must succeed."""

    running: Running
    reasons: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            try:
                resp = await self.running.decisions.Evaluate(
                    request(PHONE, tenant="acme"), timeout=5
                )
                self.reasons.append(resp.matches[0].reason)
            except grpc.aio.AioRpcError as exc:
                self.failures.append(f"{exc.code().name}: {exc.details()}")
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, url: str, keys: Keys | None, **bundle: object
) -> AsyncIterator[tuple[Running, Traffic]]:
    settings: dict[str, object] = {
        "public_keys": (keys.pub,) if keys else (),
        "allow_unsigned": keys is None and "keyring_dir" not in bundle,
        "poll_s": 0.1,
        "jitter_s": 0.0,
        "timeout_s": 30.0,
    }
    config = BundleConfig(
        url=url,
        work_dir=tmp_path / "bundle-work",
        **{**settings, **bundle},  # type: ignore[arg-type]
    )
    async with running_server(
        tmp_path / "unused",
        bundle=config,
        health_listen="127.0.0.1:0",
        metrics_listen="127.0.0.1:0",
    ) as s:
        yield s, Traffic(s)


@contextlib.asynccontextmanager
async def traffic_running(traffic: Traffic) -> AsyncIterator[None]:
    task = asyncio.create_task(traffic.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert traffic.failures == []
    assert traffic.reasons, "the traffic loop made no call"


async def bundle_status(s: Running) -> ppb.BundleStatus:
    resp = await s.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(), timeout=5)
    return resp.bundle


async def wait_for(predicate) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(20):
        while not await predicate():  # noqa: ASYNC110 - the condition lives in the server
            await asyncio.sleep(0.02)


async def wait_revision(s: Running, revision: str) -> None:
    async def active() -> bool:
        return (await bundle_status(s)).revision == revision

    await wait_for(active)


async def reason(s: Running) -> str:
    resp = await s.decisions.Evaluate(request(PHONE, tenant="acme"), timeout=5)
    return resp.matches[0].reason


async def scrape(s: Running) -> str:
    url = f"http://127.0.0.1:{s.server.metrics_port}/metrics"

    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()  # type: ignore[no-any-return]

    return await asyncio.to_thread(get)


async def readyz(s: Running) -> int:
    """GET /readyz from a thread: the endpoint is served by this test's own event loop."""
    url = f"http://127.0.0.1:{s.server.health_port}/readyz"

    def get() -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    return await asyncio.to_thread(get)


async def holds(value: bool) -> bool:
    return value


def mount(root: Path, files: dict[str, bytes]) -> None:
    """What the kubelet does to a Secret or ConfigMap volume when its object changes: the
    files go into a new timestamped folder, ``..data`` is swapped to it in one rename, each
    name is a symlink through ``..data``, and the old folder is deleted."""
    root.mkdir(parents=True, exist_ok=True)
    counter = root / ".generation"
    generation = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(generation + 1))
    new = root / f"..2026_12_01_{generation:04d}"
    new.mkdir()
    for name, data in files.items():
        (new / name).write_bytes(data)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.symlink(new.name, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")
    for entry in root.iterdir():
        if entry.is_symlink() and entry.name not in files and not entry.name.startswith(".."):
            entry.unlink()  # a key removed from the object leaves the volume
    for name in files:
        if not (root / name).is_symlink():
            os.symlink(f"..data/{name}", root / name)
    if old is not None:
        shutil.rmtree(root / old)
