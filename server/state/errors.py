"""Errors a state backend raises; the server maps them to fail-open or fail-closed."""

from __future__ import annotations


class StateError(Exception):
    """The backend could not answer (connection lost, script error, bad URL)."""


class StateTimeout(StateError):
    """The backend did not answer within the per-call timeout."""
