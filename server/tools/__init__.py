"""Offline tools behind the CLI: replay and backtest of recorded events."""
