"""``ringfence bundle``: build, verify and inspect distribution bundles; make signing keys.

ringfence bundle build rules/ -o bundle.tar.gz [--sign key.pem] [--revision REV]
ringfence bundle verify bundle.tar.gz --public-key pub.pem   (or --keyring DIR)
ringfence bundle keygen --type ed25519 --out ringfence-bundle   (-> .key and .pub.pem)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def add_bundle_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bundle", help="build, verify and inspect signed rules bundles")
    bsub = p.add_subparsers(dest="bundle_command", required=True)

    s = bsub.add_parser("build", help="pack a rules directory into a bundle")
    s.add_argument("rules", nargs="?", default="rules")
    s.add_argument("-o", "--output", required=True, help="bundle file to write (.tar.gz)")
    s.add_argument("--sign", metavar="KEY", help="PEM private key (Ed25519 or P-256)")
    s.add_argument("--revision", default="", help="revision to record (default: content hash)")
    s.add_argument(
        "--no-check",
        action="store_true",
        help="skip compiling every tenant first (by default a bundle that fails is not built)",
    )
    s.set_defaults(func=run_build)

    s = bsub.add_parser("verify", help="check a bundle's hashes and signature, as a server does")
    s.add_argument("bundle")
    s.add_argument("--public-key", action="append", default=[], metavar="PEM")
    s.add_argument("--keyring", metavar="DIR", help="directory of *.pem public keys")
    s.add_argument("--allow-unsigned", action="store_true")
    s.set_defaults(func=run_verify)

    s = bsub.add_parser("inspect", help="print a bundle's manifest (nothing is verified)")
    s.add_argument("bundle")
    s.set_defaults(func=run_inspect)

    s = bsub.add_parser("keygen", help="write a new signing key pair")
    s.add_argument("--type", choices=("ed25519", "es256"), default="ed25519")
    s.add_argument("--out", required=True, help="path prefix: PREFIX.key and PREFIX.pub.pem")
    s.set_defaults(func=run_keygen)


def _fail(msg: str) -> int:
    print(f"ringfence bundle: {msg}", file=sys.stderr)
    return 1


def run_build(ns: argparse.Namespace) -> int:
    from server.bundle.archive import BundleRejected, build, manifest_for
    from server.bundle.signing import SignatureError, load_private_key

    root = Path(ns.rules)
    out = Path(ns.output)
    try:
        key = load_private_key(Path(ns.sign)) if ns.sign else None
        manifest = manifest_for(root, revision=ns.revision)
    except (BundleRejected, SignatureError) as exc:
        return _fail(str(exc))
    if not ns.no_check:
        from server.cli.common import registry

        failed = [o for o in registry(root).load_sync() if not o.ok]
        for outcome in failed:
            print(outcome.error, file=sys.stderr)
        if failed:
            return _fail(f"{len(failed)} tenant(s) do not compile; no bundle written")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a web server never serves half a bundle.
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            build(root, fh, manifest=manifest, key=key)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    signed = "signed" if key is not None else "UNSIGNED"
    print(
        f"{out}: revision {manifest.revision}, {len(manifest.tenants)} tenant(s), "
        f"{len(manifest.files)} files, {manifest.total_bytes} bytes unpacked, "
        f"{out.stat().st_size} bytes packed, {signed}"
    )
    return 0


def run_verify(ns: argparse.Namespace) -> int:
    from server.bundle.archive import BundleRejected, unpack
    from server.bundle.signing import Keyring, SignatureError

    keyring = None
    if ns.public_key or ns.keyring:
        try:
            keyring = Keyring.load(
                [Path(p) for p in ns.public_key], Path(ns.keyring) if ns.keyring else None
            )
        except SignatureError as exc:
            return _fail(str(exc))
    elif not ns.allow_unsigned:
        return _fail("give --public-key or --keyring (or --allow-unsigned)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = unpack(Path(ns.bundle), Path(tmp) / "x", keyring=keyring)
        except (BundleRejected, OSError) as exc:
            return _fail(f"{ns.bundle}: refused: {exc}")
    m = done.manifest
    by = f"signed by {done.key_id}" if done.key_id else "not signature-checked"
    print(f"{ns.bundle}: ok, revision {m.revision}, tenants {', '.join(m.tenants)}, {by}")
    return 0


def run_inspect(ns: argparse.Namespace) -> int:
    from server.bundle.archive import BundleRejected, read_manifest

    try:
        m = read_manifest(Path(ns.bundle))
    except (BundleRejected, OSError, EOFError) as exc:
        return _fail(f"{ns.bundle}: {exc}")
    print(m.to_json().decode())
    return 0


def run_keygen(ns: argparse.Namespace) -> int:
    from server.bundle.signing import generate, key_id, load_public_key

    private_pem, public_pem = generate(ns.type)
    key_path = Path(f"{ns.out}.key")
    pub_path = Path(f"{ns.out}.pub.pem")
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _fail(f"{key_path} exists; not overwriting a key")
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    pub_path.write_bytes(public_pem)
    print(f"{key_path} (keep secret), {pub_path} (key id {key_id(load_public_key(pub_path))})")
    return 0
