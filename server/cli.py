"""The ``ringfence`` command: serve, and the tools risk ops use on rule folders."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from server.config import ConfigError, add_serve_arguments, from_namespace

if TYPE_CHECKING:
    from server.bundle.load import TenantBundle
    from server.bundle.registry import TenantRegistry


def _cmd_serve(ns: argparse.Namespace) -> int:
    from server.app import serve
    from server.observability.logs import setup_logging

    try:
        config = from_namespace(ns)
    except ConfigError as exc:
        print(f"ringfence serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    if not config.rules.is_dir():
        print(f"ringfence serve: rules directory not found: {config.rules}", file=sys.stderr)
        return 2
    return asyncio.run(serve(config))


def _registry(rules: Path, segments: str | None = None) -> TenantRegistry:
    from server.bundle.registry import TenantRegistry
    from server.phone import PhoneParser, SegmentTable

    return TenantRegistry(rules, PhoneParser(SegmentTable.load(segments or None)))


def _tenants(reg: TenantRegistry, only: str | None) -> list[str]:
    names = reg.discover()
    if only:
        if only not in names:
            raise SystemExit(f"ringfence: no tenant folder {only!r} in {reg.root}")
        return [only]
    return names


def _cmd_check(ns: argparse.Namespace) -> int:
    from dsl import check_policy
    from dsl.diagnostics import Severity, render
    from server.bundle.load import read_library, read_sources

    root = Path(ns.rules)
    if not root.is_dir():
        print(f"ringfence check: not a directory: {root}", file=sys.stderr)
        return 2
    reg = _registry(root)
    names = _tenants(reg, ns.tenant)
    failed = 0
    library = read_library(root)
    for name in names:
        # Warnings come from the checker; errors (including lists and tenant.toml) from a
        # full bundle build, exactly as the server would do it.
        sources = read_sources(root, root / name)
        for d in check_policy(sources, library=library, tenant=name):
            if d.severity == Severity.WARNING:
                print(render(d, {**library, **sources}.get(d.path, "")))
        outcome = reg.load_sync([name])[0]
        if outcome.ok:
            bundle = reg.get(name)
            assert bundle is not None
            print(
                f"ok   {name}: {bundle.rule_count} rules, {len(bundle.lists)} lists, "
                f"version {bundle.version}"
            )
        else:
            failed += 1
            print(outcome.error)
            print(f"FAIL {name}")
    if not names:
        print(f"ringfence check: no tenant folders in {root}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _policy_files(paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                sorted(
                    f for f in p.rglob("*.rf") if not any(part.startswith("..") for part in f.parts)
                )
            )
        else:
            out.append(p)
    return out


def _cmd_fmt(ns: argparse.Namespace) -> int:
    from dsl import PolicyError
    from dsl.diagnostics import render
    from dsl.formatter import format_source

    status = 0
    for path in _policy_files(ns.paths or ["rules"]):
        text = path.read_text(encoding="utf-8")
        try:
            formatted = format_source(text, str(path))
        except PolicyError as exc:
            for d in exc.diagnostics:
                print(render(d, text), file=sys.stderr)
            status = 1
            continue
        if formatted == text:
            continue
        if ns.check:
            print(f"would reformat {path}")
            status = 1
        else:
            path.write_text(formatted, encoding="utf-8")
            print(f"reformatted {path}")
    return status


def _cmd_test(ns: argparse.Namespace) -> int:
    from dsl.facts import PhoneFacts
    from dsl.testing import parse_cases, run_case

    root = Path(ns.rules)
    reg = _registry(root)
    parser = reg.parser
    total = failed = 0
    for name in _tenants(reg, ns.tenant):
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


def _cmd_eval(ns: argparse.Namespace) -> int:
    import time

    from dsl.facts import EventFacts, Facts
    from dsl.testing import explain_text
    from server.phone import PhoneParseError

    reg = _registry(Path(ns.rules))
    outcome = reg.load_sync([ns.tenant])[0]
    if not outcome.ok:
        print(outcome.error, file=sys.stderr)
        return 1
    bundle = reg.get(ns.tenant)
    assert bundle is not None
    try:
        phone = reg.parser.parse(ns.phone, ns.region or bundle.config.default_region)
    except PhoneParseError as exc:
        print(f"ringfence eval: --phone: {exc.reason}", file=sys.stderr)
        return 2
    attrs = dict(kv.split("=", 1) for kv in ns.attr)
    event = EventFacts(
        scene=ns.scene,
        app_id=ns.app_id,
        ip=ns.ip,
        device_id=ns.device_id,
        occurred_at=time.time(),
        attributes=attrs,
    )
    facts = Facts(tenant=ns.tenant, phone=phone, event=event)
    values: dict[str, int | None] = {}
    for kv in ns.agg:
        key, _, value = kv.partition("=")
        values[key] = None if value in ("unknown", "") else int(value)
    for ref in bundle.policy.plan(facts, bundle.lists):
        values.setdefault(ref.id, 1 if ref.feeds else 0)
    decision = bundle.policy.evaluate(facts, values, bundle.lists, explain=True)
    print(f"policy {ns.tenant} version {bundle.version}")
    print(
        f"phone  {phone.e164 if ns.show_number else '(hidden)'} valid={phone.valid} "
        f"region={phone.region} type={phone.number_type} carrier={phone.carrier!r} "
        f"segment={phone.segment_kind or '-'}"
    )
    print("aggregates " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
    print(explain_text(decision))
    return 0


def _cmd_replay(ns: argparse.Namespace) -> int:
    import json

    from server.tools.replay import format_table, read_events, run_replay_sync

    reg = _registry(Path(ns.rules))
    errors: list[str] = []
    events = read_events(Path(ns.events), reg.parser, ns.tenant or "", errors)
    for e in errors[:20]:
        print(e, file=sys.stderr)
    if errors:
        print(f"ringfence replay: {len(errors)} bad line(s) skipped", file=sys.stderr)
    tenant = ns.tenant or (events[0].tenant if events else "")
    events = [e for e in events if e.tenant == tenant]
    if not events:
        print("ringfence replay: no events for the tenant", file=sys.stderr)
        return 1

    def load(rules: Path) -> TenantBundle:
        r = _registry(rules)
        outcome = r.load_sync([tenant])[0]
        if not outcome.ok:
            print(outcome.error, file=sys.stderr)
            raise SystemExit(1)
        bundle = r.get(tenant)
        assert bundle is not None
        return bundle

    base = load(Path(ns.rules))
    other = load(Path(ns.against)) if ns.against else None
    summary, other_summary, diff = run_replay_sync(
        events, base, other, progress=not ns.json and sys.stderr.isatty()
    )
    if ns.json:
        out = {"tenant": tenant, "policy": summary.to_json(), "skipped_lines": len(errors)}
        if other_summary is not None:
            out["against"] = other_summary.to_json()
            out["diff"] = {
                "changed": diff.total,
                "transitions": {f"{a}->{b}": n for (a, b), n in sorted(diff.transitions.items())},
                "samples": diff.samples,
            }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    for line in format_table(summary, f"{ns.rules} ({base.version})"):
        print(line)
    if other_summary is not None:
        print()
        assert other is not None
        for line in format_table(other_summary, f"{ns.against} ({other.version})"):
            print(line)
        print()
        print(f"decisions that differ: {diff.total} of {summary.events}")
        for (a, b), n in sorted(diff.transitions.items()):
            print(f"  {a:>6} -> {b:<6} {n}")
        for s in diff.samples:
            print(
                f"  e.g. {s['event']} ({s['scene']}): {s['before']['action']} "
                f"{s['before']['rules']} -> {s['after']['action']} {s['after']['rules']}"
            )
    return 0


def _cmd_health(ns: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if ns.tls_ca or ns.tls_cert:
        creds = grpc.ssl_channel_credentials(
            root_certificates=Path(ns.tls_ca).read_bytes() if ns.tls_ca else None,
            private_key=Path(ns.tls_key).read_bytes() if ns.tls_key else None,
            certificate_chain=Path(ns.tls_cert).read_bytes() if ns.tls_cert else None,
        )
        channel = grpc.secure_channel(ns.address, creds)
    else:
        channel = grpc.insecure_channel(ns.address)
    with channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=ns.service), timeout=ns.timeout
            )
        except grpc.RpcError as exc:
            print(f"{ns.address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(f"{ns.address} {ns.service or '(server)'}: {name}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


def _cmd_hash_token(ns: argparse.Namespace) -> int:
    from server.bundle.tenant_config import hash_token

    token = ns.token if ns.token != "-" else sys.stdin.readline().strip()
    print(hash_token(token))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringfence", description="Phone-number risk decisions.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC server")
    add_serve_arguments(s)
    s.set_defaults(func=_cmd_serve)

    s = sub.add_parser("check", help="compile every tenant's policy and lists; exit 1 on errors")
    s.add_argument("rules", nargs="?", default="rules")
    s.add_argument("--tenant")
    s.set_defaults(func=_cmd_check)

    s = sub.add_parser("fmt", help="format .rf files in place (or --check)")
    s.add_argument("paths", nargs="*")
    s.add_argument("--check", action="store_true", help="only report files that would change")
    s.set_defaults(func=_cmd_fmt)

    s = sub.add_parser("test", help="run the rule tests beside each policy")
    s.add_argument("rules", nargs="?", default="rules")
    s.add_argument("--tenant")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=_cmd_test)

    s = sub.add_parser("eval", help="decide one number offline and explain why")
    s.add_argument("--rules", default="rules")
    s.add_argument("--tenant", required=True)
    s.add_argument("--phone", required=True)
    s.add_argument("--region", default="")
    s.add_argument("--scene", default="")
    s.add_argument("--app-id", default="")
    s.add_argument("--ip", default="")
    s.add_argument("--device-id", default="")
    s.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument(
        "--agg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="aggregate value (default: 1 if the event feeds it, else 0)",
    )
    s.add_argument("--show-number", action="store_true", help="print the parsed E.164")
    s.set_defaults(func=_cmd_eval)

    s = sub.add_parser("replay", help="replay recorded events through a policy (backtest)")
    s.add_argument("events", help="JSON lines: plain events or the server's decision log")
    s.add_argument("--rules", default="rules")
    s.add_argument("--against", help="a second rules dir: report decisions that differ")
    s.add_argument("--tenant", help="default: the tenant of the first event")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_cmd_replay)

    s = sub.add_parser("health", help="check a server's health (exit 0 when SERVING)")
    s.add_argument("address", nargs="?", default="127.0.0.1:50051")
    s.add_argument("--service", default="")
    s.add_argument("--timeout", type=float, default=3.0)
    s.add_argument("--tls-ca")
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.set_defaults(func=_cmd_health)

    s = sub.add_parser("hash-token", help="print the SHA-256 to put in tenant.toml")
    s.add_argument("token", help="the token, or - to read it from stdin")
    s.set_defaults(func=_cmd_hash_token)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return int(ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())
