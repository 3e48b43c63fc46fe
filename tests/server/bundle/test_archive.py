"""Bundles: build, sign, verify and unpack; and every way a hostile archive is refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import RINGFENCE, RULES

from server.bundle.archive import (
    FORMAT,
    MANIFEST,
    SIGNATURE,
    BundleRejected,
    Limits,
    build,
    manifest_for,
    unpack,
)
from server.bundle.signing import Keyring, generate, load_private_key, load_public_key

POLICY = b'rule r {\n  when not phone.valid\n  then review\n  reason "x"\n}\n'


def keypair(tmp: Path, kind: str, name: str = "k") -> tuple[Path, Path]:
    private, public = generate(kind)  # type: ignore[arg-type]
    (tmp / f"{name}.key").write_bytes(private)
    (tmp / f"{name}.pub.pem").write_bytes(public)
    return tmp / f"{name}.key", tmp / f"{name}.pub.pem"


def ring(*pubs: Path) -> Keyring:
    return Keyring.of(load_public_key(p) for p in pubs)


def make_bundle(tmp: Path, rules: Path = RULES, key: Path | None = None, **kw: Any) -> Path:
    out = tmp / "bundle.tar.gz"
    with out.open("wb") as fh:
        build(
            rules,
            fh,
            manifest=manifest_for(rules, **kw),
            key=load_private_key(key) if key else None,
        )
    return out


@pytest.mark.parametrize("kind", ["ed25519", "es256"])
def test_signed_round_trip(tmp_path: Path, kind: str) -> None:
    key, pub = keypair(tmp_path, kind)
    archive = make_bundle(tmp_path, key=key, revision="git-abc123")
    done = unpack(archive, tmp_path / "out", keyring=ring(pub))
    assert done.manifest.revision == "git-abc123"
    assert done.manifest.tenants == ("demo",)
    assert done.key_id
    originals = {
        p.relative_to(RULES).as_posix(): p.read_bytes() for p in RULES.rglob("*") if p.is_file()
    }
    unpacked = {
        p.relative_to(done.directory).as_posix(): p.read_bytes()
        for p in done.directory.rglob("*")
        if p.is_file()
    }
    assert unpacked == originals


def test_source_date_epoch_makes_builds_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    assert manifest_for(RULES).created == "2026-01-01T00:00:00Z"


def test_same_rules_same_bytes_and_revision(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_bundle(tmp_path / "a", created="2026-01-01T00:00:00Z").read_bytes()
    second = make_bundle(tmp_path / "b", created="2026-01-01T00:00:00Z").read_bytes()
    assert first == second
    assert manifest_for(RULES).revision == manifest_for(RULES).revision


def test_a_keyring_picks_the_signing_key(tmp_path: Path) -> None:
    old_key, old_pub = keypair(tmp_path, "ed25519", "old")
    _, new_pub = keypair(tmp_path, "es256", "new")
    archive = make_bundle(tmp_path, key=old_key)
    done = unpack(archive, tmp_path / "out", keyring=ring(new_pub, old_pub))
    assert done.key_id == next(iter(ring(old_pub).keys))


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    key, _ = keypair(tmp_path, "ed25519", "a")
    _, other = keypair(tmp_path, "ed25519", "b")
    archive = make_bundle(tmp_path, key=key)
    with pytest.raises(BundleRejected, match="not trusted"):
        unpack(archive, tmp_path / "out", keyring=ring(other))
    assert not (tmp_path / "out").exists()


def test_unsigned_is_refused_when_a_key_is_required(tmp_path: Path) -> None:
    _, pub = keypair(tmp_path, "ed25519")
    archive = make_bundle(tmp_path)
    with pytest.raises(BundleRejected, match="not signed"):
        unpack(archive, tmp_path / "out", keyring=ring(pub))
    # ...and accepted only when the operator opted out of signatures.
    assert unpack(archive, tmp_path / "ok", keyring=None).manifest.tenants == ("demo",)


# --- hand-made hostile archives ----------------------------------------------------------


def entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def manifest_doc(files: dict[str, bytes], tenants: list[str] | None = None) -> bytes:
    doc = {
        "format": FORMAT,
        "revision": "r1",
        "created": "2026-01-01T00:00:00Z",
        "tenants": ["acme"] if tenants is None else tenants,
        "files": {name: entry(data) for name, data in files.items()},
    }
    return json.dumps(doc).encode()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **kw: Any) -> Any:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for k, v in kw.items():
        setattr(info, k, v)
    return info, (data if kind == tarfile.REGTYPE else None)


def craft(tmp: Path, members: list[Any], *, compress: bool = True) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    out = tmp / "crafted.tar.gz"
    out.write_bytes(gzip.compress(raw) if compress else raw)
    return out


GOOD = {"acme/policy.rf": POLICY}


def with_manifest(files: dict[str, bytes], *extra: Any, listed: dict[str, bytes] | None = None):  # type: ignore[no-untyped-def]
    body = manifest_doc(files if listed is None else listed)
    return [member(MANIFEST, body), *extra]


def _symlink() -> list[Any]:
    return with_manifest(
        GOOD, member("acme/policy.rf", kind=tarfile.SYMTYPE, linkname="/etc/passwd")
    )


def _hardlink() -> list[Any]:
    return with_manifest(
        GOOD, member("acme/policy.rf", kind=tarfile.LNKTYPE, linkname="/etc/passwd")
    )


def _device() -> list[Any]:
    return with_manifest(GOOD, member("acme/policy.rf", kind=tarfile.CHRTYPE))


def _fifo() -> list[Any]:
    return with_manifest(GOOD, member("acme/policy.rf", kind=tarfile.FIFOTYPE))


def _dotdot() -> list[Any]:
    return [member(MANIFEST, manifest_doc(GOOD)), member("acme/../../evil.rf", POLICY)]


def _absolute() -> list[Any]:
    return [member(MANIFEST, manifest_doc(GOOD)), member("/tmp/evil.rf", POLICY)]


def _dotdot_in_manifest() -> list[Any]:
    return [member(MANIFEST, manifest_doc({"acme/../x.rf": POLICY}))]


def _not_listed() -> list[Any]:
    return with_manifest(GOOD, member("acme/policy.rf", POLICY), member("acme/extra.rf", POLICY))


def _missing() -> list[Any]:
    return with_manifest({**GOOD, "acme/other.rf": POLICY}, member("acme/policy.rf", POLICY))


def _duplicate() -> list[Any]:
    return with_manifest(GOOD, member("acme/policy.rf", POLICY), member("acme/policy.rf", POLICY))


def _tampered() -> list[Any]:
    return with_manifest(GOOD, member("acme/policy.rf", POLICY.replace(b"review", b"allow!")))


def _size_lie() -> list[Any]:
    # The member is far bigger than the manifest says: refused before its data is read.
    return with_manifest(GOOD, member("acme/policy.rf", b"\0" * (4 << 20)))


def _no_manifest() -> list[Any]:
    return [member("acme/policy.rf", POLICY)]


def _manifest_second() -> list[Any]:
    return [member("acme/policy.rf", POLICY), member(MANIFEST, manifest_doc(GOOD))]


def _manifest_is_a_link() -> list[Any]:
    return [member(MANIFEST, kind=tarfile.SYMTYPE, linkname="/etc/passwd")]


def _bad_json() -> list[Any]:
    return [member(MANIFEST, b"{not json")]


def _stray_tenant() -> list[Any]:
    files = {**GOOD, "other/policy.rf": POLICY}
    return with_manifest(files, member("acme/policy.rf", POLICY), member("other/policy.rf", POLICY))


def _dotfile() -> list[Any]:
    files = {**GOOD, "acme/.hidden": POLICY}
    return with_manifest(files, member("acme/policy.rf", POLICY), member("acme/.hidden", POLICY))


def _huge_pax_header() -> list[Any]:
    # A PAX header tarfile would read whole into memory: the bounded stream stops it.
    info, data = member("acme/policy.rf", POLICY)
    info.pax_headers = {"comment": "x" * (2 << 20)}
    return with_manifest(GOOD, (info, data))


def _file_and_folder() -> list[Any]:
    # "acme/a" as a file and as the folder of "acme/a/b": once a FileExistsError traceback.
    files = {**GOOD, "acme/a": POLICY, "acme/a/b": POLICY}
    return with_manifest(files, *(member(n, d) for n, d in files.items()))


def _signature_garbage() -> list[Any]:
    return with_manifest(GOOD, member(SIGNATURE, b"garbage"), member("acme/policy.rf", POLICY))


ATTACKS: dict[str, tuple[Callable[[], list[Any]], str]] = {
    "symlink": (_symlink, "not a regular file"),
    "hard link": (_hardlink, "not a regular file"),
    "character device": (_device, "not a regular file"),
    "fifo": (_fifo, "not a regular file"),
    "dot-dot path": (_dotdot, "leaves the bundle"),
    "absolute path": (_absolute, "absolute path"),
    "dot-dot in the manifest": (_dotdot_in_manifest, "leaves the bundle"),
    "file not in the manifest": (_not_listed, "not in the manifest"),
    "file missing from the archive": (_missing, "not in the archive"),
    "file twice": (_duplicate, "appears twice"),
    "tampered file": (_tampered, "sha256 does not match"),
    "size lie (bomb)": (_size_lie, "manifest says"),
    "no manifest": (_no_manifest, "first member must be"),
    "manifest not first": (_manifest_second, "first member must be"),
    "manifest is a symlink": (_manifest_is_a_link, "not a regular file"),
    "manifest not JSON": (_bad_json, "not JSON"),
    "tenant not listed": (_stray_tenant, "tenants do not match"),
    "dot-file": (_dotfile, "bad member name"),
    "huge PAX header": (_huge_pax_header, "decompression bomb"),
    "garbage signature": (_signature_garbage, "signature: not JSON"),
    "file and folder": (_file_and_folder, "acme/a is a file and also a folder of acme/a/b"),
}


@pytest.mark.parametrize(("build_members", "message"), ATTACKS.values(), ids=ATTACKS.keys())
def test_hostile_archives_are_refused(
    tmp_path: Path, build_members: Callable[[], list[Any]], message: str
) -> None:
    archive = craft(tmp_path, build_members())
    outside = tmp_path / "evil.rf"
    _, pub = keypair(tmp_path, "ed25519")
    # Signature checks off (or the garbage one) so each check is reached on its own.
    keyring = ring(pub) if "signature" in message else None
    with pytest.raises(BundleRejected, match=message):
        unpack(archive, tmp_path / "out", keyring=keyring)
    assert not (tmp_path / "out").exists()
    assert not outside.exists()


def test_the_crafting_helper_makes_acceptable_archives(tmp_path: Path) -> None:
    # The attacks above differ from this one case only in what they break.
    archive = craft(tmp_path, with_manifest(GOOD, member("acme/policy.rf", POLICY)))
    done = unpack(archive, tmp_path / "out", keyring=None)
    assert (done.directory / "acme" / "policy.rf").read_bytes() == POLICY


def test_decompression_bomb_in_a_declared_file_stops_at_the_limit(tmp_path: Path) -> None:
    # 64 MiB of zeros (~64 KiB compressed), honestly declared: refused by the unpacked limit.
    bomb = b"\0" * (64 << 20)
    archive = craft(
        tmp_path, with_manifest({"acme/policy.rf": bomb}, member("acme/policy.rf", bomb))
    )
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(BundleRejected, match="bytes unpacked, more than"):
        unpack(archive, tmp_path / "out", keyring=None, limits=Limits(max_unpacked_bytes=1 << 20))


def test_too_many_files(tmp_path: Path) -> None:
    files = {f"acme/f{i}.rf": POLICY for i in range(20)}
    archive = craft(tmp_path, with_manifest(files, *(member(n, d) for n, d in files.items())))
    with pytest.raises(BundleRejected, match="more than 10"):
        unpack(archive, tmp_path / "out", keyring=None, limits=Limits(max_files=10))


def test_oversize_archive(tmp_path: Path) -> None:
    archive = make_bundle(tmp_path)
    with pytest.raises(BundleRejected, match="more than 100"):
        unpack(archive, tmp_path / "out", keyring=None, limits=Limits(max_archive_bytes=100))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "plain tar"])
def test_corrupt_archives(tmp_path: Path, damage: str) -> None:
    archive = make_bundle(tmp_path)
    data = archive.read_bytes()
    if damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        archive.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    else:
        archive.write_bytes(gzip.decompress(data))
    with pytest.raises(BundleRejected, match="corrupt archive"):
        unpack(archive, tmp_path / "out", keyring=None)
    assert not (tmp_path / "out").exists()
    if damage == "truncated":
        return  # inspect reads only the manifest, which may come before the cut
    # inspect says the same, without a traceback.
    out = run("inspect", str(archive))
    assert out.returncode == 1
    assert "corrupt archive" in out.stderr
    assert "Traceback" not in out.stderr


# --- the command ------------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RINGFENCE), "bundle", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_build_and_verify(tmp_path: Path) -> None:
    assert run("keygen", "--type", "es256", "--out", str(tmp_path / "k")).returncode == 0
    assert oct((tmp_path / "k.key").stat().st_mode & 0o777) == "0o600"
    out = tmp_path / "b.tar.gz"
    built = run("build", str(RULES), "-o", str(out), "--sign", str(tmp_path / "k.key"))
    assert built.returncode == 0, built.stderr
    assert "signed" in built.stdout
    ok = run("verify", str(out), "--public-key", str(tmp_path / "k.pub.pem"))
    assert ok.returncode == 0, ok.stderr
    assert "tenants demo" in ok.stdout
    assert run("verify", str(out)).returncode == 1  # no key given: refuses to say "ok"


def test_cli_build_refuses_rules_that_do_not_compile(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "acme").mkdir(parents=True)
    (rules / "acme" / "policy.rf").write_text("rule x { when ??? }\n")
    result = run("build", str(rules), "-o", str(tmp_path / "b.tar.gz"))
    assert result.returncode == 1
    assert "acme/policy.rf:1:" in result.stderr
    assert not (tmp_path / "b.tar.gz").exists()


def test_cli_build_refuses_symlinks(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "acme").mkdir(parents=True)
    (rules / "acme" / "policy.rf").write_bytes(POLICY)
    (rules / "acme" / "secret.csv").symlink_to("/etc/passwd")
    result = run("build", str(rules), "-o", str(tmp_path / "b.tar.gz"), "--no-check")
    assert result.returncode == 1
    assert "only regular files" in result.stderr
