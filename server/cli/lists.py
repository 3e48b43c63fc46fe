"""``ringfence list add|remove|show``: change a tenant's lists kept in state on a running
server (PolicyService; docs/lists.md, "Lists the server writes").

    ringfence list add --tenant demo manual_blocks +8613800138000 --ttl 7d --note "case 4411"
    ringfence list remove --tenant demo manual_blocks +8613800138000
    ringfence list show --tenant demo manual_blocks

The admin token comes from ``--token-file`` or ``RINGFENCE_ADMIN_TOKEN`` (never a flag's
value: command lines are visible to every user of the machine).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from server.cli.common import channel


def add_list_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="add to, remove from or show a tenant's list kept in state")
    verbs = p.add_subparsers(dest="verb", required=True)
    for verb, help_text in (
        ("add", "put numbers on the list (again: replaces their entries)"),
        ("remove", "take numbers off the list"),
        ("show", "the list's live entries, numbers masked"),
    ):
        s = verbs.add_parser(verb, help=help_text)
        s.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT")
        s.add_argument("--tenant", required=True)
        s.add_argument("list", help="the list's name in the tenant's policy")
        if verb != "show":
            s.add_argument("numbers", nargs="+", metavar="NUMBER")
        if verb == "add":
            s.add_argument(
                "--ttl", default="", help="how long it stays, e.g. 7d (default: until removed)"
            )
            s.add_argument("--note", default="", help='why (rules read it as LIST.label("note"))')
            s.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        s.add_argument("--token-file", help="the admin token (else RINGFENCE_ADMIN_TOKEN)")
        s.add_argument("--tls-ca")
        s.add_argument("--tls-cert")
        s.add_argument("--tls-key")
        s.add_argument("--timeout", type=float, default=10.0)
        s.set_defaults(func=run_list)


class _Usage(Exception):
    pass


def run_list(ns: argparse.Namespace) -> int:
    import grpc

    from server.api import policy_pb2_grpc as pb_grpc

    token = os.environ.get("RINGFENCE_ADMIN_TOKEN", "")
    if ns.token_file:
        token = Path(ns.token_file).read_text(encoding="utf-8").strip()
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    verb = {"add": _add, "remove": _remove, "show": _show}[ns.verb]
    with channel(ns.server, ns) as ch:
        try:
            print(verb(pb_grpc.PolicyServiceStub(ch), ns, metadata))
        except _Usage as exc:
            print(f"ringfence list: {exc}", file=sys.stderr)
            return 2
        except grpc.RpcError as exc:
            print(f"ringfence list: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    return 0


def _add(stub: Any, ns: argparse.Namespace, metadata: Any) -> str:
    from dsl.durations import DurationError, parse_duration
    from server.api import policy_pb2 as pb

    ttl = 0
    if ns.ttl:
        try:
            ttl = parse_duration(ns.ttl)
        except DurationError as exc:
            raise _Usage(f"--ttl {ns.ttl}: {exc}") from None
    labels = {}
    for kv in ns.label:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise _Usage(f"--label {kv!r}: expected KEY=VALUE")
        labels[k] = v
    entries = [
        pb.NewListEntry(number=n, ttl_seconds=ttl, note=ns.note, labels=labels) for n in ns.numbers
    ]
    got = stub.AddListEntries(
        pb.AddListEntriesRequest(tenant=ns.tenant, list=ns.list, entries=entries),
        metadata=metadata,
        timeout=ns.timeout,
    )
    return f"{ns.list}: {got.added} added, {got.updated} updated (version {got.version})"


def _remove(stub: Any, ns: argparse.Namespace, metadata: Any) -> str:
    from server.api import policy_pb2 as pb

    got = stub.RemoveListEntries(
        pb.RemoveListEntriesRequest(tenant=ns.tenant, list=ns.list, numbers=ns.numbers),
        metadata=metadata,
        timeout=ns.timeout,
    )
    return f"{ns.list}: {got.removed} removed (version {got.version})"


def _show(stub: Any, ns: argparse.Namespace, metadata: Any) -> str:
    from server.api import policy_pb2 as pb

    # Page by page: a list of 100,000 entries does not fit one gRPC message.
    pages = [
        stub.GetListEntries(
            pb.GetListEntriesRequest(tenant=ns.tenant, list=ns.list),
            metadata=metadata,
            timeout=ns.timeout,
        )
    ]
    while pages[-1].next_page_token:
        pages.append(
            stub.GetListEntries(
                pb.GetListEntriesRequest(
                    tenant=ns.tenant,
                    list=ns.list,
                    page_token=pages[-1].next_page_token,
                    page_size=1000,
                ),
                metadata=metadata,
                timeout=ns.timeout,
            )
        )
    entries = [e for page in pages for e in page.entries]
    lines = [f"{ns.list}: {len(entries)} entries (version {pages[0].version})"]
    for e in entries:
        until = e.expires_at.ToJsonString() if e.HasField("expires_at") else "-"
        shown = ", ".join(f"{k}={v}" for k, v in sorted(e.labels.items()))
        lines.append(f"  {e.masked_number}  until {until}  by {e.added_by}  {e.note}  {shown}")
    return "\n".join(line.rstrip() for line in lines)
