"""``ringfence hash-token``: the SHA-256 to put in tenant.toml."""

from __future__ import annotations

import argparse
import sys


def run_hash_token(ns: argparse.Namespace) -> int:
    from server.bundle.tenant_config import hash_token

    token = ns.token if ns.token != "-" else sys.stdin.readline().strip()
    print(hash_token(token))
    return 0
