"""The TextMate grammar for ``.rf`` files, generated from the language's own tables.

``python -m server.lsp.textmate`` writes ``editors/vscode/syntaxes/ringfence.tmLanguage.json``;
``tests/editors`` fails when the committed file is stale. Keywords come from
``grammar.lark``, facts, helpers, functions, kinds, actions and settings from ``dsl.schema``
(through :mod:`dsl.reference`), duration units from ``dsl.durations``. The literal
patterns (numbers, strings, raw strings) mirror the terminals of ``grammar.lark``;
``tests/editors`` runs VS Code's tokenizer next to the language's lexer to hold them equal.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from dsl import reference, schema
from dsl.durations import UNITS

SCOPE = "source.ringfence"
OUT = Path(__file__).resolve().parents[2] / "editors/vscode/syntaxes/ringfence.tmLanguage.json"

NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def _words(words: Any) -> str:
    unique = sorted(set(words), key=lambda w: (-len(w), w))
    return "|".join(re.escape(w) for w in unique)


def _named_declarations() -> dict[str, str]:
    """Declaration keyword -> scope of the name that follows it."""
    return {
        "const": "entity.name.constant.ringfence",
        "list": "entity.name.type.list.ringfence",
        "aggregate": "entity.name.variable.aggregate.ringfence",
        "condition": "entity.name.function.condition.ringfence",
        "rule": "entity.name.function.rule.ringfence",
    }


def grammar() -> dict[str, Any]:
    kw = reference.keywords()
    declarations = kw.items
    named = {k: v for k, v in _named_declarations().items() if k in declarations}
    clauses = kw.clauses
    settings = tuple(schema.SETTINGS)
    functions = (*schema.AGG_KINDS, *(f.name for f in reference.functions()))
    helpers = (
        *schema.STRING_METHODS,
        *schema.PHONE_METHODS,
        reference.LIST_HELPER.name,
        reference.AGGREGATE_HELPER.name,
        reference.EVENT_HELPER.name,
    )
    units = "".join(sorted(UNITS))
    plain_other = [w for w in kw.other if w not in ("override",)]
    plain_declarations = [w for w in declarations if w not in ("import", "shadow")]
    repository: dict[str, Any] = {
        "comment": {
            "match": r"(#).*$",
            "name": "comment.line.number-sign.ringfence",
            "captures": {"1": {"name": "punctuation.definition.comment.ringfence"}},
        },
        "string": {
            "begin": '"',
            "beginCaptures": {"0": {"name": "punctuation.definition.string.begin.ringfence"}},
            "end": '(")|$',
            "endCaptures": {"1": {"name": "punctuation.definition.string.end.ringfence"}},
            "name": "string.quoted.double.ringfence",
            "patterns": [
                {"match": r"\\.", "name": "constant.character.escape.ringfence"},
                {"include": "#interpolation"},
            ],
        },
        # r"..." (RAW_STRING): taken as written, so no escapes and no interpolations.
        "raw_string": {
            "begin": r'\b(r)(")',
            "beginCaptures": {
                "1": {"name": "storage.type.string.raw.ringfence"},
                "2": {"name": "punctuation.definition.string.begin.ringfence"},
            },
            "end": '(")|$',
            "endCaptures": {"1": {"name": "punctuation.definition.string.end.ringfence"}},
            "name": "string.quoted.double.raw.ringfence",
        },
        "interpolation": {
            "begin": r"\{",
            "beginCaptures": {"0": {"name": "punctuation.section.interpolation.begin.ringfence"}},
            "end": r"\}",
            "endCaptures": {"0": {"name": "punctuation.section.interpolation.end.ringfence"}},
            "name": "meta.interpolation.ringfence",
            "contentName": "meta.embedded.expression.ringfence",
            "patterns": [{"include": "#expression"}],
        },
        "declaration": {
            "patterns": [
                {
                    "match": rf"\b({re.escape(word)})\s+({NAME})",
                    "captures": {
                        "1": {"name": "keyword.other.declaration.ringfence"},
                        "2": {"name": scope},
                    },
                }
                for word, scope in named.items()
            ]
        },
        "keywords": {
            "patterns": [
                {
                    "match": r"\b(import)\b",
                    "name": "keyword.control.import.ringfence",
                },
                {
                    "match": r"\b(shadow)\b",
                    "name": "storage.modifier.shadow.ringfence",
                },
                {
                    "match": rf"\b({_words(plain_declarations)})\b",
                    "name": "keyword.other.declaration.ringfence",
                },
                {
                    "match": rf"\b(then)\s+({NAME})(?:\s+(override)\b)?",
                    "captures": {
                        "1": {"name": "keyword.control.clause.ringfence"},
                        "2": {"name": "constant.language.action.ringfence"},
                        "3": {"name": "keyword.other.override.ringfence"},
                    },
                },
                {
                    "match": rf"\b(on_error)\s+({NAME})",
                    "captures": {
                        "1": {"name": "keyword.control.clause.ringfence"},
                        "2": {"name": "constant.language.action.ringfence"},
                    },
                },
                {
                    "match": rf"\b({_words(clauses)})\b",
                    "name": "keyword.control.clause.ringfence",
                },
                {
                    "match": rf"\b(per)\s+(list)\s+({NAME})",
                    "captures": {
                        "1": {"name": "keyword.other.ringfence"},
                        "2": {"name": "support.type.key.ringfence"},
                        "3": {"name": "variable.other.list.ringfence"},
                    },
                },
                {
                    # per ip/24: a network of the address
                    "match": r"\b(per)\s+(ip)\s*(/)\s*([0-9]+)\b",
                    "captures": {
                        "1": {"name": "keyword.other.ringfence"},
                        "2": {"name": "support.type.key.ringfence"},
                        "3": {"name": "punctuation.separator.network.ringfence"},
                        "4": {"name": "constant.numeric.integer.ringfence"},
                    },
                },
                {
                    "match": rf"\b(per)\s+({_words(schema.KEY_KINDS)})\b",
                    "captures": {
                        "1": {"name": "keyword.other.ringfence"},
                        "2": {"name": "support.type.key.ringfence"},
                    },
                },
                {
                    "begin": r"\b(per)\s*(\()",
                    "beginCaptures": {
                        "1": {"name": "keyword.other.ringfence"},
                        "2": {"name": "punctuation.section.parens.begin.ringfence"},
                    },
                    "end": r"\)",
                    "endCaptures": {"0": {"name": "punctuation.section.parens.end.ringfence"}},
                    "patterns": [
                        {
                            "match": rf"\b(list)\s+({NAME})",
                            "captures": {
                                "1": {"name": "support.type.key.ringfence"},
                                "2": {"name": "variable.other.list.ringfence"},
                            },
                        },
                        {
                            "match": r"\b(ip)\s*(/)\s*([0-9]+)\b",
                            "captures": {
                                "1": {"name": "support.type.key.ringfence"},
                                "2": {"name": "punctuation.separator.network.ringfence"},
                                "3": {"name": "constant.numeric.integer.ringfence"},
                            },
                        },
                        {
                            "match": rf"\b({_words(schema.KEY_KINDS)})\b",
                            "name": "support.type.key.ringfence",
                        },
                        {"match": ",", "name": "punctuation.separator.comma.ringfence"},
                        {"include": "#expression"},
                    ],
                },
                {
                    "match": r"\b(over)\s+(today)\b",
                    "captures": {
                        "1": {"name": "keyword.other.ringfence"},
                        "2": {"name": "constant.language.window.ringfence"},
                    },
                },
                {
                    "match": rf"\b({_words(plain_other)})\b",
                    "name": "keyword.other.ringfence",
                },
                {
                    "match": rf"\b({_words(kw.operators)})\b",
                    "name": "keyword.operator.word.ringfence",
                },
                {
                    "match": rf"\b({_words(kw.literals)})\b",
                    "name": "constant.language.boolean.ringfence",
                },
            ]
        },
        "setting": {
            "patterns": [
                {
                    # `default_action = review`: the bare word is an action, as after `then`.
                    "match": rf"^\s*(default_action)\s*(=)\s*({_words(schema.ACTIONS)})\b",
                    "captures": {
                        "1": {"name": "variable.other.property.setting.ringfence"},
                        "2": {"name": "keyword.operator.assignment.ringfence"},
                        "3": {"name": "constant.language.action.ringfence"},
                    },
                },
                {
                    "match": rf"^\s*({_words(settings)})\s*(?==)",
                    "captures": {"1": {"name": "variable.other.property.setting.ringfence"}},
                },
            ]
        },
        "facts": {
            "patterns": [
                {
                    "match": rf"\b({_words(reference.FACT_OBJECTS)})\b"
                    rf"(?:\s*(\.)\s*({NAME})\b(?!\s*\())?",
                    "captures": {
                        "1": {"name": "variable.language.fact.ringfence"},
                        "2": {"name": "punctuation.accessor.ringfence"},
                        "3": {"name": "variable.other.property.fact.ringfence"},
                    },
                },
                {"match": r"\btenant\b", "name": "variable.language.fact.ringfence"},
            ]
        },
        "calls": {
            "patterns": [
                {
                    "match": rf"(\.)\s*({_words(helpers)})(?=\s*\()",
                    "captures": {
                        "1": {"name": "punctuation.accessor.ringfence"},
                        "2": {"name": "support.function.helper.ringfence"},
                    },
                },
                {
                    "match": rf"\b({_words(functions)})(?=\s*\()",
                    "name": "support.function.builtin.ringfence",
                },
                {
                    "match": rf"(\.)\s*({NAME})(?=\s*\()",
                    "captures": {
                        "1": {"name": "punctuation.accessor.ringfence"},
                        "2": {"name": "entity.name.function.ringfence"},
                    },
                },
                {
                    "match": rf"\b({NAME})(?=\s*\()",
                    "name": "entity.name.function.ringfence",
                },
            ]
        },
        "numbers": {
            "patterns": [
                {
                    "match": rf"\b(?:[0-9]+[{units}])+\b",
                    "name": "constant.numeric.duration.ringfence",
                },
                {
                    "match": r"\b[0-9]+[A-Za-z_][A-Za-z0-9_]*\b",
                    "name": "invalid.illegal.duration.ringfence",
                },
                # DECIMAL outranks DURATION in the lexer: `1.5h` is 1.5 and a name.
                {"match": r"\b[0-9]+\.[0-9]+", "name": "constant.numeric.decimal.ringfence"},
                {"match": r"\b[0-9]+\b", "name": "constant.numeric.integer.ringfence"},
            ]
        },
        "operators": {
            "patterns": [
                {"match": r"==|!=|<=|>=|<|>", "name": "keyword.operator.comparison.ringfence"},
                {"match": r"=", "name": "keyword.operator.assignment.ringfence"},
                {"match": r"[-+*/]", "name": "keyword.operator.arithmetic.ringfence"},
                {"match": r"&&|\|\|", "name": "invalid.illegal.operator.ringfence"},
            ]
        },
        "punctuation": {
            "patterns": [
                {"match": r"\{", "name": "punctuation.section.braces.begin.ringfence"},
                {"match": r"\}", "name": "punctuation.section.braces.end.ringfence"},
                {"match": r"\(", "name": "punctuation.section.parens.begin.ringfence"},
                {"match": r"\)", "name": "punctuation.section.parens.end.ringfence"},
                {"match": r"\[", "name": "punctuation.section.brackets.begin.ringfence"},
                {"match": r"\]", "name": "punctuation.section.brackets.end.ringfence"},
                {"match": ",", "name": "punctuation.separator.comma.ringfence"},
                {"match": r"\.", "name": "punctuation.accessor.ringfence"},
            ]
        },
        "names": {
            "patterns": [
                {
                    "match": r"\b[A-Z][A-Z0-9_]*\b",
                    "name": "variable.other.constant.ringfence",
                },
                {"match": rf"\b{NAME}\b", "name": "variable.other.ringfence"},
            ]
        },
        "invalid": {"match": r"[^\s]", "name": "invalid.illegal.character.ringfence"},
        "expression": {
            "patterns": [
                {"include": "#comment"},
                {"include": "#raw_string"},
                {"include": "#string"},
                {"include": "#keywords"},
                {"include": "#facts"},
                {"include": "#calls"},
                {"include": "#numbers"},
                {"include": "#operators"},
                {"include": "#punctuation"},
                {"include": "#names"},
                {"include": "#invalid"},
            ]
        },
    }
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "Ringfence",
        "scopeName": SCOPE,
        "fileTypes": ["rf"],
        "comment": "Generated by `python -m server.lsp.textmate` from dsl/; do not edit.",
        "patterns": [
            {"include": "#comment"},
            {"include": "#raw_string"},
            {"include": "#string"},
            {"include": "#declaration"},
            {"include": "#setting"},
            {"include": "#expression"},
        ],
        "repository": repository,
    }


def render() -> str:
    return json.dumps(grammar(), indent=2) + "\n"


# What the packaged extension must hold (paths inside the .vsix).
VSIX_FILES = (
    "extension/package.json",
    "extension/extension.js",
    "extension/language-configuration.json",
    "extension/syntaxes/ringfence.tmLanguage.json",
    "extension/node_modules/vscode-languageclient/node.js",
)


def check_vsix(path: Path) -> list[str]:
    """Files missing from a packaged extension (empty when it is complete)."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    return [f for f in VSIX_FILES if f not in names]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        if OUT.read_text(encoding="utf-8") != render():
            print(f"{OUT} is stale: run make grammar", file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["--check-vsix"]:
        missing = check_vsix(Path(argv[1]))
        for f in missing:
            print(f"{argv[1]}: missing {f}", file=sys.stderr)
        if not missing:
            print(f"{argv[1]}: ok ({Path(argv[1]).stat().st_size} bytes)")
        return 1 if missing else 0
    target = Path(argv[0]) if argv else OUT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
