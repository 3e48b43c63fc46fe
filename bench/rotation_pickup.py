"""How long a rotation takes to take effect once its file changes: a bearer token the
bundle server changed (the pod polls with the new one and succeeds again) and a signing key
added to the keyring (the bundle it signed, refused a moment before, is live). Files are
changed as the kubelet changes a mounted Secret or ConfigMap (a ``..data`` swap), against
a real nginx; the poll interval is 30 s, so what is measured is the server noticing the
file, not its next poll. The kubelet's own delay (up to a minute or two from the API object
to the file) comes on top.

    .venv/bin/python bench/rotation_pickup.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import importlib  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import machine  # noqa: E402
from server.bundle.signing import generate  # noqa: E402

# The tests' helpers (a real nginx, kubelet-style mounts, a server pulling a bundle),
# imported at run time: they are test code, not type-checked with the benches.
_support: Any = importlib.import_module("bundle_support")
mount, publish, rules, serving = (
    _support.mount,
    _support.publish,
    _support.rules,
    _support.serving,
)
NginxServer: Any = importlib.import_module("conftest_nginx").NginxServer

POLL_S = 30.0


async def until(predicate, cap_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(cap_s):
        while not predicate():  # noqa: ASYNC110 - the state lives in the server
            await asyncio.sleep(0.005)


async def token_rounds(tmp: Path, nginx: Any, rounds: int) -> list[float]:
    secret = tmp / "token-secret"
    mount(secret, {"token": b"token-0"})
    nginx.restart(token="token-0")
    keys_dir = tmp
    private, public = generate("ed25519")
    (keys_dir / "k.key").write_bytes(private)
    (keys_dir / "k.pem").write_bytes(public)
    publish(nginx.www, rules(tmp / "v1", "block", "v1"), keys_dir / "k.key", "v1")
    url = nginx.url("b.tar.gz", private=True)
    times = []
    async with serving(
        tmp / "pod", url, None, public_keys=(keys_dir / "k.pem",), allow_unsigned=False,
        token_file=secret / "token", poll_s=POLL_S,
    ) as (s, _):  # fmt: skip
        source = s.server.bundle_source
        assert source is not None
        await until(lambda: source.status.revision == "v1")
        for i in range(1, rounds + 1):
            nginx.restart(token=f"token-{i}")  # the old token is revoked
            source.poll_now()
            await until(lambda: "HTTP 401" in source.status.last_error)
            t0 = time.perf_counter()
            mount(secret, {"token": f"token-{i}".encode()})
            await until(lambda: source.status.last_error == "")
            times.append(time.perf_counter() - t0)
    return times


async def key_rounds(tmp: Path, nginx: Any, rounds: int) -> list[float]:
    keyring = tmp / "keyring"
    pems: dict[str, bytes] = {}
    private, public = generate("ed25519")
    (tmp / "k0.key").write_bytes(private)
    pems["k0.pem"] = public
    mount(keyring, pems)
    publish(nginx.www, rules(tmp / "r0", "block", "r0"), tmp / "k0.key", "r0")
    times = []
    async with serving(
        tmp / "pod", nginx.url("b.tar.gz"), None, keyring_dir=keyring, poll_s=POLL_S
    ) as (s, _):
        source = s.server.bundle_source
        assert source is not None
        await until(lambda: source.status.revision == "r0")
        for i in range(1, rounds + 1):
            private, public = generate("ed25519")
            (tmp / f"k{i}.key").write_bytes(private)
            refused = source.status.results["rejected"]
            # CI signs with a key the pods do not have yet: refused...
            publish(nginx.www, rules(tmp / f"r{i}", "review", f"r{i}"), tmp / f"k{i}.key", f"r{i}")
            source.poll_now()
            await until(lambda r=refused: source.status.results["rejected"] > r)
            # ...until the key reaches the keyring.
            t0 = time.perf_counter()
            pems[f"k{i}.pem"] = public
            mount(keyring, pems)
            await until(lambda i=i: source.status.revision == f"r{i}")
            times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float]) -> str:
    return (
        f"median {1000 * statistics.median(times):.0f} ms, max {1000 * max(times):.0f} ms "
        f"over {len(times)} rotations"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ns = ap.parse_args()
    print(f"# rotation pickup, poll interval {POLL_S:.0f} s ({machine()})")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nginx = NginxServer.start(work / "nginx", work / "www")
        for sub in ("t", "k"):
            (work / sub).mkdir()
        try:
            tokens = asyncio.run(token_rounds(work / "t", nginx, ns.rounds))
            keys = asyncio.run(key_rounds(work / "k", nginx, ns.rounds))
        finally:
            nginx.stop()
    print(f"bearer token rotated : {summary(tokens)} (file changed -> polls succeed again)")
    print(f"signing key added    : {summary(keys)} (file changed -> refused bundle live)")
    print(f"against the poll interval: {max(tokens + keys) / POLL_S:.3f}x of {POLL_S:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
