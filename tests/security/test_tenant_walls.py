"""Walls between tenants (issue 11, items 5 and 12).

A tenant's policy reads lists from its own folder and ``_shared/`` only; any file whose
real path leaves its folder (a symlink to another tenant, to a secret on the pod) is
refused without being read, so nothing of it can show up in GetPolicyStatus, the log or a
decision; FIFOs, devices and oversized files are refused before a read can hang or fill
memory.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import grpc
import pytest
from support import request, running_server

from server.api import policy_pb2 as ppb
from server.bundle.files import MAX_LIST_FILE, MAX_POLICY_FILE
from server.bundle.load import BundleError, load_bundle
from server.phone import PhoneParser

CANARY = "CANARY-7d1e-SECRET"
SECRET_LIST = f"entry,note\n+8613800138000,{CANARY}\n"
GOOD = 'rule invalid {\n  when not phone.valid\n  then review\n  reason "invalid"\n}\n'


def stealing_policy(path: str) -> str:
    return (
        f'list stolen from "{path}"\n'
        "rule leak {\n  when phone in stolen\n  then review\n"
        '  reason "{stolen.label("note")}"\n}\n'
    )


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """Tenants alpha (with a secret list) and beta, a _shared/ library, and a secret file
    outside the rules directory."""
    root = tmp_path / "rules"
    (root / "alpha" / "lists").mkdir(parents=True)
    (root / "alpha" / "policy.rf").write_text(
        'list secret from "lists/secret.csv"\n'
        'rule listed {\n  when phone in secret\n  then block\n  reason "listed"\n}\n'
    )
    (root / "alpha" / "lists" / "secret.csv").write_text(SECRET_LIST)
    (root / "beta" / "lists").mkdir(parents=True)
    (root / "beta" / "policy.rf").write_text(GOOD)
    (root / "_shared").mkdir()
    (root / "_shared" / "consts.rf").write_text("const LIMIT = 5\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    # What an attacker would like to read: if it were parsed, its first line would be
    # quoted in a syntax error.
    (outside / "secret.rf").write_text(f"{CANARY} = hunter2\n")
    (outside / "tenant.toml").write_text(f'description = "{CANARY}"\n')
    (outside / "secret.csv").write_text(SECRET_LIST)
    return root


def build(root: Path, tenant: str) -> str:
    """The build error of ``tenant`` (the test expects one)."""
    with pytest.raises(BundleError) as info:
        load_bundle(root, tenant, PhoneParser())
    return info.value.text()


def assert_no_canary(*texts: object) -> None:
    for text in texts:
        assert CANARY not in json.dumps(text, default=str)


@pytest.mark.parametrize(
    "written",
    [
        "../alpha/lists/secret.csv",
        "lists/../../alpha/lists/secret.csv",
        "_shared/../alpha/lists/secret.csv",
        "ABSOLUTE",
    ],
)
async def test_a_list_from_another_tenant_is_refused_with_its_position(
    rules: Path, written: str, caplog: pytest.LogCaptureFixture
) -> None:
    if written == "ABSOLUTE":
        written = str(rules / "alpha" / "lists" / "secret.csv")
    (rules / "beta" / "policy.rf").write_text(stealing_policy(written))
    caplog.set_level(logging.INFO)
    async with running_server(rules) as s:
        (st,) = (
            await s.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(tenant="beta"), timeout=5)
        ).tenants
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.decisions.Evaluate(request("+8613800138000", tenant="beta"), timeout=5)
        alpha = await s.decisions.Evaluate(request("+8613800138000", tenant="alpha"), timeout=5)
    assert st.last_error.startswith(
        f"beta/policy.rf:1:1: error: list path {written!r} leaves the tenant folder"
    )
    assert "from _shared/" in st.last_error
    assert not st.version  # never loaded: nothing of alpha's list reached beta
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert alpha.matches[0].rule == "listed"  # alpha itself is unaffected
    assert_no_canary(st.last_error, info.value.details(), [r.__dict__ for r in caplog.records])


def test_a_symlinked_list_into_another_tenant_is_refused(rules: Path) -> None:
    os.symlink("../../alpha/lists/secret.csv", rules / "beta" / "lists" / "mine.csv")
    (rules / "beta" / "policy.rf").write_text(stealing_policy("lists/mine.csv"))
    error = build(rules, "beta")
    # The declaration's line and a caret follow: the file's content never does.
    assert error.splitlines() == [
        "beta/policy.rf:1:1: error: list file 'lists/mine.csv' leads outside the tenant "
        "folder (through a symlink)",
        '    list stolen from "lists/mine.csv"',
        "    ^",
    ]


def test_a_symlink_inside_the_tenant_folder_is_fine(rules: Path) -> None:
    (rules / "beta" / "lists" / "v2.csv").write_text("entry,note\n+8613800138001,mine\n")
    os.symlink("v2.csv", rules / "beta" / "lists" / "current.csv")
    (rules / "beta" / "policy.rf").write_text(stealing_policy("lists/current.csv"))
    bundle = load_bundle(rules, "beta", PhoneParser())
    assert "+8613800138001" in bundle.lists["stolen"]


def _plant(root: Path, kind: str) -> tuple[str, str]:
    """Plant a symlink leading outside; return the tenant to build and the message."""
    outside = root.parent / "outside"
    if kind == "policy file":
        os.symlink(outside / "secret.rf", root / "beta" / "extra.rf")
        return "beta", "beta/extra.rf: error: policy file leads outside the tenant folder"
    if kind == "tenant.toml":
        os.symlink(outside / "tenant.toml", root / "beta" / "tenant.toml")
        return "beta", "tenant.toml leads outside the tenant folder (through a symlink)"
    if kind == "shared file":
        os.symlink(outside / "secret.rf", root / "_shared" / "evil.rf")
        return "beta", "_shared/evil.rf: error: policy file leads outside _shared/"
    if kind == "shared folder":
        shutil_move(root / "_shared", outside / "_shared")
        os.symlink(outside / "_shared", root / "_shared")
        return "beta", "_shared: error: _shared leads outside the rules directory"
    if kind == "tenant folder":
        (outside / "gamma").mkdir()
        os.symlink(outside / "secret.rf", outside / "gamma" / "policy.rf")
        os.symlink(outside / "gamma", root / "gamma")
        return "gamma", "error: tenant folder 'gamma' leads outside the rules directory"
    if kind == "policy in another tenant":
        os.symlink("../alpha/policy.rf", root / "beta" / "alpha.rf")
        return "beta", "beta/alpha.rf: error: policy file leads outside the tenant folder"
    raise AssertionError(kind)


def shutil_move(src: Path, dst: Path) -> None:
    import shutil

    shutil.move(str(src), str(dst))


@pytest.mark.parametrize(
    "kind",
    [
        "policy file",
        "tenant.toml",
        "shared file",
        "shared folder",
        "tenant folder",
        "policy in another tenant",
    ],
)
async def test_files_whose_real_path_leaves_their_folder_are_refused_unread(
    rules: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    tenant, message = _plant(rules, kind)
    caplog.set_level(logging.INFO)
    async with running_server(rules) as s:
        status = {
            t.tenant: t
            for t in (
                await s.policies.GetPolicyStatus(ppb.GetPolicyStatusRequest(), timeout=5)
            ).tenants
        }
    assert message in status[tenant].last_error
    assert not status[tenant].version
    assert_no_canary([t.last_error for t in status.values()], [r.__dict__ for r in caplog.records])


def _special(root: Path, kind: str) -> Path:
    path = root / "beta" / "lists" / "special.csv"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        try:
            os.mknod(path, 0o600 | 0o020000, os.makedev(1, 5))  # a /dev/zero look-alike
        except PermissionError:
            pytest.skip("creating a device node needs root")
    return path


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.timeout(30)
def test_fifos_and_devices_are_refused_without_a_read(rules: Path, kind: str) -> None:
    """A FIFO would block the loader's read forever, a device could feed it without end."""
    _special(rules, kind)
    (rules / "beta" / "policy.rf").write_text(stealing_policy("lists/special.csv"))
    assert build(rules, "beta").splitlines()[0] == (
        "beta/policy.rf:1:1: error: list file 'lists/special.csv' is not a regular file"
    )
    os.replace(rules / "beta" / "lists" / "special.csv", rules / "beta" / "weird.rf")
    assert "beta/weird.rf: error: policy file is not a regular file" in build(rules, "beta")


def test_oversized_files_are_refused_before_reading(rules: Path) -> None:
    # Sparse files: the size is there, the bytes are never read.
    with open(rules / "beta" / "lists" / "huge.csv", "wb") as f:
        f.truncate(MAX_LIST_FILE + 1)
    (rules / "beta" / "policy.rf").write_text(stealing_policy("lists/huge.csv"))
    assert build(rules, "beta").splitlines()[0] == (
        f"beta/policy.rf:1:1: error: list file 'lists/huge.csv' is {MAX_LIST_FILE + 1} "
        f"bytes; at most {MAX_LIST_FILE} are read"
    )
    with open(rules / "beta" / "big.rf", "wb") as f:
        f.truncate(MAX_POLICY_FILE + 1)
    assert f"beta/big.rf: error: policy file is {MAX_POLICY_FILE + 1} bytes" in build(rules, "beta")


def test_imports_reach_only_the_shared_library(rules: Path) -> None:
    (rules / "beta" / "policy.rf").write_text('import "alpha/policy.rf"\n' + GOOD)
    error = build(rules, "beta")
    assert "beta/policy.rf:1:1: error: unknown library file 'alpha/policy.rf'" in error
    assert "_shared/consts.rf" in error  # what is available: the library only
