"""The ``ringfence`` command: serve, and the tools risk ops use on rule folders.

One module per subcommand; each imports what it needs when it runs, so ``ringfence
health`` does not pay for the compiler.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from server.cli import (
    bundle,
    check,
    evaluate,
    fmt,
    health,
    lists,
    lsp,
    replay,
    ruletest,
    serve,
    tokens,
)
from server.config import add_ip_db_arguments, add_serve_arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringfence", description="Phone-number risk decisions.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC server")
    add_serve_arguments(s)
    s.set_defaults(func=serve.run_serve)

    s = sub.add_parser("check", help="compile every tenant's policy and lists; exit 1 on errors")
    s.add_argument("rules", nargs="?", default="rules")
    s.add_argument("--tenant")
    s.set_defaults(func=check.run_check)

    s = sub.add_parser("fmt", help="format .rf files in place (or --check)")
    s.add_argument("paths", nargs="*")
    s.add_argument("--check", action="store_true", help="only report files that would change")
    s.set_defaults(func=fmt.run_fmt)

    s = sub.add_parser("test", help="run the rule tests beside each policy")
    s.add_argument("rules", nargs="?", default="rules")
    s.add_argument("--tenant")
    s.add_argument("-v", "--verbose", action="store_true")
    add_ip_db_arguments(s)
    s.add_argument(
        "--coverage",
        action="store_true",
        help="also print the rules and conditions no case exercises (fires and stays quiet,"
        " true and false)",
    )
    s.set_defaults(func=ruletest.run_test)

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
        "--at",
        metavar="TIME",
        help="event time, RFC 3339 / ISO 8601 (2026-01-05T09:30:00+08:00) or epoch seconds; "
        "without an offset it is read in the policy's time zone (default: now)",
    )
    s.add_argument(
        "--fact",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a phone or IP fact, e.g. phone.segment_kind=mvno, phone.valid=false,"
        " ip.province=CN-JS",
    )
    add_ip_db_arguments(s)
    s.add_argument(
        "--agg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="aggregate value (or unknown); those not given are assumed, see --assume",
    )
    s.add_argument(
        "--assume",
        choices=[evaluate.ASSUME_FIRST, evaluate.ASSUME_UNKNOWN],
        default=evaluate.ASSUME_FIRST,
        help="aggregates not given: 'first' (the event is the first in each window: 1 where "
        "it feeds the aggregate, else 0; the default) or 'unknown'",
    )
    s.add_argument("--show-number", action="store_true", help="print the parsed E.164")
    s.set_defaults(func=evaluate.run_eval)

    s = sub.add_parser("replay", help="replay recorded events through a policy (backtest)")
    s.add_argument("events", help="JSON lines: plain events or the server's decision log")
    s.add_argument("--rules", default="rules")
    s.add_argument("--against", help="a second rules dir: report decisions that differ")
    s.add_argument("--tenant", help="default: the tenant of the first event")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--report", metavar="HTML", help="also write a self-contained HTML report")
    s.add_argument(
        "--labels",
        metavar="FILE",
        help="outcome labels joined on request_id: CSV (request_id,label) or JSON lines;"
        " they win over the events' own label field",
    )
    s.add_argument(
        "--fraud-label",
        action="append",
        default=[],
        metavar="VALUE",
        help="a label value that means fraud (repeat, or comma-separate); every other label"
        " then means good (default: fraud/bad/chargeback/true/1... are fraud,"
        " good/legit/normal/false/0... good)",
    )
    s.add_argument(
        "--decisions",
        metavar="FILE",
        help="write one record per event (action, score, rules, aggregate values): JSON"
        " lines, or Parquet when FILE ends in .parquet",
    )
    s.add_argument(
        "--max-bad-lines",
        type=int,
        metavar="N",
        help="stop with an error once more than N lines are bad (default: skip them all)",
    )
    add_ip_db_arguments(s)
    s.set_defaults(func=replay.run_replay)

    s = sub.add_parser("health", help="check a server's health (exit 0 when SERVING)")
    s.add_argument("address", nargs="?", default="")
    s.add_argument("--service", default="")
    s.add_argument(
        "--local",
        action="store_true",
        help="the server of this container, from its RINGFENCE_* settings (HEALTHCHECK)",
    )
    s.add_argument("--live", action="store_true", help="with --local: liveness, not readiness")
    s.add_argument("--timeout", type=float, default=3.0)
    s.add_argument("--tls-ca")
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.set_defaults(func=health.run_health)

    bundle.add_bundle_parser(sub)
    lists.add_list_parser(sub)

    s = sub.add_parser("lsp", help="the language server for editors (stdio)")
    lsp.add_arguments(s)
    s.set_defaults(func=lsp.run_lsp)

    s = sub.add_parser("hash-token", help="print the SHA-256 to put in tenant.toml")
    s.add_argument("token", help="the token, or - to read it from stdin")
    s.set_defaults(func=tokens.run_hash_token)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        code = int(ns.func(ns))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`ringfence bundle inspect b.tar.gz | head`): stop quietly,
        # as a Unix tool killed by SIGPIPE would, without a traceback or a flush error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
