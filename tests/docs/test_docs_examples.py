"""Every policy example in docs/*.md is checked, so the docs cannot drift from the language.

A fenced block says what it is after its opening fence:

- ```` ```rf ```` a whole policy file: it must check without errors (the shipped library
  ``rules/_shared/*.rf`` is available to ``import``; lists need not exist).
- ```` ```rf expr ```` expressions, one per line (``#`` comments and blank lines skipped):
  each must check as the ``when`` of a rule added to the page's last ``rf`` policy, so it
  may use that policy's names.
- ```` ```rf error ```` a policy the checker must reject (an example of a mistake).
- ```` ```rf skip ```` not checked: an outline with placeholders such as ``NAME``.
- ```` ```toml rf-test ```` rule-test cases (``[[case]]``) that must all pass against the
  page's last ``rf`` policy (numbers parsed by the server's parser, region CN).
- ```` ```toml tenant ```` a ``tenant.toml``: it must load as the server loads one.

A block with no language at all must not be a policy (it would escape these checks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsl import PolicyError, check_policy, compile_policy, render_all
from dsl.facts import PhoneFacts
from dsl.parser import parse_module
from dsl.testing import load_cases, run_case
from server.state import MemoryBackend

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
LIBRARY = {
    f"_shared/{p.name}": p.read_text(encoding="utf-8")
    for p in sorted((ROOT / "rules" / "_shared").glob("*.rf"))
}
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence
    info: str
    text: str
    policy: Block | None  # the page's last whole `rf` block before this one

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    policy: Block | None = None
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j].removeprefix(indent))
            j += 1
        block = Block(path.name, i + 1, info, "\n".join(body) + "\n", policy)
        out.append(block)
        if info == "rf":
            policy = block
        i = j + 1
    return out


ALL = [b for page in DOCS for b in blocks(page)]
RF = [b for b in ALL if b.info.split(" ")[0] in ("rf", "toml")]


def _check(text: str, where: str) -> tuple[str, list[str]]:
    path = f"docs/{where.replace(':', '_')}.rf"
    diags = check_policy({path: text}, library=LIBRARY, tenant="docs")
    errors = [d for d in diags if d.is_error]
    return render_all(errors, {path: text}), [d.message for d in errors]


@pytest.mark.parametrize("block", RF, ids=lambda b: f"{b.where} {b.info}")
def test_policy_examples(block: Block) -> None:
    kind = block.info
    if kind == "rf":
        shown, errors = _check(block.text, block.where)
        assert not errors, f"{block.where}: the example does not check:\n{shown}"
    elif kind == "rf error":
        _, errors = _check(block.text, block.where)
        assert errors, f"{block.where}: this example of a mistake is accepted"
    elif kind == "rf expr":
        assert block.policy is not None, f"{block.where}: no ```rf policy before it"
        exprs = [x.strip() for x in block.text.splitlines()]
        for n, expr in enumerate(x for x in exprs if x and not x.startswith("#")):
            text = (
                block.policy.text
                + f"\nrule doc_example_{n} {{\n    when {expr}\n    then review\n}}\n"
            )
            shown, errors = _check(text, block.where)
            assert not errors, f"{block.where}: `{expr}` does not check:\n{shown}"
    elif kind == "rf skip":
        pass
    elif kind == "toml rf-test":
        assert block.policy is not None, f"{block.where}: no ```rf policy before it"
        _run_cases(block, block.policy)
    elif kind == "toml tenant":
        from server.bundle.tenant_config import TenantConfigError, parse_tenant_config

        try:
            parse_tenant_config(block.text, block.where)
        except TenantConfigError as err:
            pytest.fail(f"the tenant.toml example does not load: {err}")
    elif kind.startswith("rf"):
        pytest.fail(f"{block.where}: unknown kind of example ```{kind}")


def _run_cases(block: Block, policy_block: Block) -> None:
    from server.phone import PhoneParser, SegmentTable

    parser = PhoneParser(SegmentTable.load(None))

    def make_phone(raw: str, region: str) -> PhoneFacts:
        return parser.parse(raw, region or "CN")

    policy = compile_policy({"docs/policy.rf": policy_block.text}, library=LIBRARY, tenant="docs")
    try:
        cases = load_cases(block.text, block.where, make_phone, policy=policy)
    except PolicyError as err:
        pytest.fail(render_all(err.diagnostics, {block.where: block.text}))
    results = (run_case(policy, c, {}, MemoryBackend(hash_key=b"t")) for c in cases)
    failed = [r.report() for r in results if not r.passed]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("block", [b for b in ALL if not b.info], ids=lambda b: b.where)
def test_unlabelled_blocks_are_not_policies(block: Block) -> None:
    try:
        module = parse_module(block.text, block.where)
    except PolicyError:
        return
    assert not module.items, (
        f"{block.where}: a policy in a block without a language: label it ```rf"
    )


def test_the_examples_are_found() -> None:
    kinds = {b.info for b in RF}
    assert "rf" in kinds
    assert any(b.page == "lists.md" and b.info == "rf" for b in RF)


def test_a_broken_example_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '```rf\nlist black_cards from "b.csv"\n```\n\n'
        '```rf expr\nblack_cards.label("risk") == "risk2"\n'
        'labels(black_cards).risk == "risk2"\n```\n',
        encoding="utf-8",
    )
    policy, exprs = blocks(page)
    assert (policy.info, exprs.info, exprs.policy) == ("rf", "rf expr", policy)
    with pytest.raises(AssertionError, match=r"labels\(black_cards\)\.risk"):
        test_policy_examples(exprs)
