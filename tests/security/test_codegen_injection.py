"""Policy text can never become code: every place a rule file puts text into the generated
module, tried with text built to break out of it (attacks 1 and 2 of the sandbox issue).

Each payload would create a canary file if any of it ran. The generated tree is read back
from its readable form, so these tests also show the text landed as a constant.
"""

from __future__ import annotations

import ast as py
from pathlib import Path

import pytest
from audit_events import watching
from dsl_helpers import DictList, facts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import build_policy, check_policy, generated_python, load_policy


def _payload(canary: Path) -> str:
    code = f"open({str(canary)!r}, 'w').write('pwned')"
    # Each ends a comment, a string or a line in one of the ways source text could be cut.
    return f"x\\n{code}\\n#"


def _payloads(canary: Path) -> list[str]:
    code = f"open({str(canary)!r}, 'w')"
    return [
        f"x\\n{code}\\n#",
        f"x'); {code}; ('",
        f'x\\"); {code}; (\\"',
        f"x\\\\n{code}",
        f"x\r{code}\r#",  # a raw carriage return: the lexer takes it inside a string
        f"x\u2028{code}",  # a line separator, for anything that splits lines on it
        "x\\t__import__('os').system('id')",
        "().__class__.__base__.__subclasses__()",
        "\\{}); open(0)\\{",
    ]


def _policy(text: str) -> str:
    """A policy that puts ``text`` everywhere a string can go."""
    return f'''
list vip from "lists/vip.csv"
aggregate d = distinct(event.attributes["{text}"], per number, over 1h)
    where event.attributes["{text}"] != "{text}"
rule r {{
    when d > 0 and event.scene == "{text}" and event.attributes["{text}"].starts_with("{text}")
        or phone in vip and vip.label("{text}") == "{text}"
    then review
    tags "t{text}"
    reason "{text} {{vip.label("{text}")}} {{event.attributes["{text}"]}}"
}}
'''


def _run(sources: dict[str, str]) -> list[tuple[str, str]]:
    lists = {"vip": DictList({"+8613800000001": {"k": "v"}})}
    with watching() as events:
        artifact = build_policy(sources, tenant="t")
    policy = load_policy(artifact)
    policy.evaluate(facts(), {"d": 1}, lists, explain=True)  # loads explain outside the watch
    with watching() as more:
        policy.plan(facts(), lists)
        policy.evaluate(facts(), {"d": 1}, lists)
        policy.evaluate(facts(), {"d": 1}, lists, explain=True)
    return events + more


def test_strings_everywhere_stay_strings(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    for text in _payloads(canary):
        sources = {"t/policy.rf": _policy(text)}
        assert not [d for d in check_policy(sources, tenant="t") if d.is_error], text
        assert _run(sources) == []
        assert not canary.exists(), text


def test_attack_1_attribute_key_newline(tmp_path: Path) -> None:
    """The attack as reported: an attribute key that once ended a codegen comment."""
    canary = tmp_path / "canary"
    source = (
        f'aggregate d = distinct(event.attributes["{_payload(canary)}"], per number, over 1h)\n'
        "rule r {\n when d > 1\n then review\n}\n"
    )
    assert _run({"t/policy.rf": source}) == []
    assert not canary.exists()
    # What it became: one string constant holding the newline, in a call to .get().
    tree = py.parse(generated_python({"t/policy.rf": source}, tenant="t"))
    keys = [n.value for n in py.walk(tree) if isinstance(n, py.Constant)]
    assert any(isinstance(k, str) and "\n" in k and str(canary) in k for k in keys)


@pytest.mark.parametrize(
    "name",
    [
        "t/x\n    open('CANARY', 'w')\n    #.rf",
        "t/x'); open('CANARY', 'w'); ('.rf",
        't/x"""\nopen("CANARY", "w")\n""".rf',
        "t/\r\nimport os\r\n.rf",
    ],
)
def test_attack_2_file_names(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy file whose name breaks out of a `# rule NAME (path:line)` comment."""
    monkeypatch.chdir(tmp_path)
    source = 'rule r {\n when event.scene == "x"\n then review\n}\n'
    assert _run({name: source}) == []
    assert not (tmp_path / "CANARY").exists()


def _shape(tree: py.AST) -> list[tuple[str, object]]:
    """The tree with the values of string constants left out: what user text must not move."""
    out: list[tuple[str, object]] = []
    for node in py.walk(tree):
        match node:
            case py.Constant(value=str()):
                out.append(("Constant", "str"))
            case py.Constant(value=v):
                out.append(("Constant", v))
            case py.Name(id=i):
                out.append(("Name", i))
            case py.Attribute(attr=a):
                out.append(("Attribute", a))
            case _:
                out.append((type(node).__name__, None))
    return out


# Text as a rule file can write it: any character but the quote, backslash and braces
# (those are escaped by the author), plus the escapes the language knows.
_TEXT = st.lists(
    st.one_of(
        st.characters(blacklist_characters='"\\{}\n', blacklist_categories=("Cs",)),
        st.sampled_from(["\\n", "\\t", '\\"', "\\\\", "\\{", "\\}"]),
    ),
    max_size=30,
).map("".join)
_FILE = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
).map(lambda s: f"t/{s}.rf")
_BASE = _shape(py.parse(generated_python({"t/p.rf": _policy("a")}, tenant="t")))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, path=_FILE)
def test_user_text_never_changes_the_shape_of_the_tree(text: str, path: str) -> None:
    source = generated_python({path: _policy(text)}, tenant="t")
    assert _shape(py.parse(source)) == _BASE


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, path=_FILE)
def test_user_text_has_no_side_effect(text: str, path: str) -> None:
    assert _run({path: _policy(text)}) == []
