"""``ringfence serve``: run the gRPC server."""

from __future__ import annotations

import argparse
import asyncio
import sys

from server.config import ConfigError, from_namespace


def run_serve(ns: argparse.Namespace) -> int:
    from server.app import serve
    from server.observability.logs import setup_logging

    try:
        config = from_namespace(ns)
    except ConfigError as exc:
        print(f"ringfence serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    if config.bundle is None and not config.rules.is_dir():
        print(f"ringfence serve: rules directory not found: {config.rules}", file=sys.stderr)
        return 2
    from server.geo.ipdb import IpDatabaseError, IpLocator

    try:
        locator = IpLocator.open(config.ip_dbs)
    except IpDatabaseError as exc:
        print(f"ringfence serve: --ip-db {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(config, locator))
