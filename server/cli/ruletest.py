"""``ringfence test``: run the rule tests beside each policy."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from server.cli.common import registry, tenants


def run_test(ns: argparse.Namespace) -> int:
    from dsl.facts import PhoneFacts
    from dsl.testing import parse_cases, run_case

    root = Path(ns.rules)
    reg = registry(root)
    parser = reg.parser
    total = failed = 0
    for name in tenants(reg, ns.tenant):
        outcome = reg.load_sync([name])[0]
        if not outcome.ok:
            print(outcome.error)
            print(f"FAIL {name}: policy does not compile")
            failed += 1
            continue
        bundle = reg.get(name)
        assert bundle is not None
        fallback = bundle.config.default_region or "CN"

        def make_phone(raw: str, region: str, fallback: str = fallback) -> PhoneFacts:
            return parser.parse(raw, region or fallback)

        for case_file in sorted((root / name / "tests").glob("*.toml")):
            try:
                data = tomllib.loads(case_file.read_text(encoding="utf-8"))
                cases = parse_cases(data, str(case_file), make_phone)
            except (tomllib.TOMLDecodeError, ValueError) as exc:
                print(f"{case_file}: error: {exc}")
                failed += 1
                continue
            for case in cases:
                total += 1
                result = run_case(bundle.policy, case, bundle.lists)
                if not result.passed:
                    failed += 1
                if ns.verbose or not result.passed:
                    print(result.report())
    print(f"{total - min(failed, total)} passed, {failed} failed")
    return 1 if failed else 0
