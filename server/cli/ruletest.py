"""``ringfence test``: run the rule tests beside each policy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from server.cli.common import open_ip_databases, registry, tenants

if TYPE_CHECKING:
    from dsl import CompiledPolicy
    from dsl.coverage import Coverage
    from server.bundle.load import TenantBundle
    from server.bundle.registry import TenantRegistry


def run_test(ns: argparse.Namespace) -> int:
    from dsl import PolicyError, render_all
    from dsl.facts import PhoneFacts
    from dsl.testing import load_cases, run_case
    from server.cli import output
    from server.state import MemoryBackend

    root = Path(ns.rules)
    locator = open_ip_databases(getattr(ns, "ip_db", None), "test")
    if locator is None:
        return 2
    reg = registry(root)
    parser = reg.parser
    out = output.console()
    # One row per case file (per case with -v): tenant, what, passed, failed.
    rows: list[tuple[str, str, int, int]] = []
    details: list[str] = []
    coverages: list[tuple[str, Coverage]] = []
    for name in tenants(reg, ns.tenant):
        outcome = reg.load_sync([name])[0]
        if not outcome.ok:
            details += [str(outcome.error), f"FAIL {name}: policy does not compile"]
            rows.append((name, "(policy does not compile)", 0, 1))
            continue
        bundle = reg.get(name)
        assert bundle is not None
        fallback = bundle.config.default_region or "CN"

        def make_phone(raw: str, region: str, fallback: str = fallback) -> PhoneFacts:
            return parser.parse(raw, region or fallback)

        columns = {n: getattr(v, "label_columns", ()) for n, v in bundle.lists.items()}
        watched = _coverage(reg, root, name, bundle) if ns.coverage else None
        if watched is not None:
            coverages.append((name, watched[1]))
        for case_file in sorted((root / name / "tests").glob("*.toml")):
            shown = case_file.relative_to(root / name).as_posix()
            # A bad file is a file:line:col error at the key it is about, never a traceback.
            try:
                text = case_file.read_text(encoding="utf-8")
                cases = load_cases(
                    text,
                    str(case_file),
                    make_phone,
                    policy=bundle.policy,
                    label_columns=columns,
                    make_ip=locator.facts if locator.configured else None,
                )
            except (OSError, UnicodeDecodeError) as exc:
                details.append(f"{case_file}: error: cannot read: {exc}")
                rows.append((name, shown, 0, 1))
                continue
            except PolicyError as exc:
                details.append(render_all(exc.diagnostics, {str(case_file): text}))
                rows.append((name, shown, 0, 1))
                continue
            passed = failed = 0
            for case in cases:
                # Each case on a fresh state: its history, then its event (docs/state.md §7).
                state = MemoryBackend(hash_key=b"ringfence-test")
                result = run_case(bundle.policy, case, bundle.lists, state)
                passed += result.passed
                failed += not result.passed
                if not result.passed:
                    details.append(result.report())
                if ns.verbose:
                    rows.append((name, case.where, int(result.passed), int(not result.passed)))
                if watched is not None:
                    state = MemoryBackend(hash_key=b"ringfence-test")
                    seen = run_case(watched[0], case, bundle.lists, state)
                    if seen.decision is not None:
                        watched[1].add(seen.decision)
            if not ns.verbose:
                rows.append((name, shown, passed, failed))
    for text in details:
        output.line(out, text)
    if ns.verbose:
        t = output.table(out, "tenant", "case", "result")
        for tenant, what, _, failed in rows:
            t.add_row(*output.cells(tenant, what), output.status(out, not failed))
    else:
        t = output.table(out, "tenant", "file", "passed", "failed", "", right=("passed", "failed"))
        for tenant, what, passed, failed in rows:
            t.add_row(*output.cells(tenant, what, passed, failed), output.status(out, not failed))
    output.emit(out, t)
    for tenant, cov in coverages:
        for span, what in cov.gaps():
            output.line(out, f"{span.path}:{span.line}:{span.column}: {what}")
        output.line(out, f"{tenant}: {cov.summary()} ({cov.cases} cases)")
    total_passed = sum(r[2] for r in rows)
    total_failed = sum(r[3] for r in rows)
    output.line(out, f"{total_passed} passed, {total_failed} failed")
    return 1 if total_failed else 0


def _coverage(
    reg: TenantRegistry, root: Path, name: str, bundle: TenantBundle
) -> tuple[CompiledPolicy, Coverage] | None:
    """The tenant's policy with every condition watched by a shadow rule, and an empty
    tally (dsl/coverage.py); None when the policy cannot be read again."""
    from dataclasses import replace

    from dsl import CompileOptions, PolicyError, load_policy
    from dsl.coverage import Coverage, plan_coverage
    from server.bundle.load import read_library, read_sources

    sources, errors = read_sources(root, name)
    library, lib_errors = read_library(root)
    if errors or lib_errors:
        return None
    plan = plan_coverage(sources, library, name)
    tz = bundle.config.timezone
    # One more rule per condition: the limits on rules and nodes are the real policy's
    # concern, not this copy's.
    options = CompileOptions(
        default_timezone=tz or "UTC",
        tenant_timezone=tz,
        max_rules=10 * CompileOptions().max_rules,
        max_policy_nodes=10 * CompileOptions().max_policy_nodes,
    )
    for _ in range(3):
        try:
            artifact = reg.compiler.build(
                plan.sources(sources), library=library, tenant=name, options=options
            )
        except PolicyError as exc:
            plan = plan.without(exc.diagnostics)
            continue
        return load_policy(replace(artifact, warnings=())), Coverage(plan)
    return None
