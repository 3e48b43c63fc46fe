"""Credentials out of every log line: URL user info, query strings, authorization headers.

The bundle URL may be ``https://user:PASSWORD@host/...`` or a presigned object-store URL
whose query is the credential (``X-Amz-Signature``, ``X-Amz-Credential``, ``sig``, ...),
and the HTTP client logs each request's URL at INFO, on every poll. Rather than hoping
every caller and every library formats URLs carefully, :class:`RedactingFilter` sits on
the process's log handler and rewrites each record on its way out: the message (with its
arguments), string fields passed as ``extra``, and the formatted traceback.

What is removed: the user info of any ``scheme://user[:password]@host`` (``REDACTED``
stands in), the value of every query parameter of a URL (names are kept, so a log still
says *which* parameters were sent), and the credential after ``Authorization:``,
``Bearer`` or ``Basic``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MARK = "REDACTED"

# scheme://user:password@  (user info ends at the first / ? # or whitespace; '@' may
# appear in a password only percent-encoded, so the last '@' before the path counts).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s\"'<>]*)@")
# The query of a URL: everything from '?' to the end of the URL.
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s?#\"'<>]*)\?([^\s#\"'<>]*)")
_PARAM = re.compile(r"([^&=;]*)=([^&;]*)")
# Authorization: <scheme> <credential>, and bare "Bearer x" / "Basic x" anywhere.
_AUTH = re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|basic)\s+)?[^\s\"',}]+")
# Case-sensitive, as HTTP writes them, so plain words ("basic validation") stay.
_SCHEME = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}")


def _query(match: re.Match[str]) -> str:
    params = _PARAM.sub(lambda m: f"{m[1]}={MARK}", match[2])
    if params == match[2] and match[2]:
        params = MARK  # a query that is no key=value list: all of it
    return f"{match[1]}?{params}"


def _auth(match: re.Match[str]) -> str:
    scheme = f"{match[2]} " if match[2] else ""
    return f"{match[1]}{scheme}{MARK}"


def redact_text(text: str) -> str:
    """``text`` with URL credentials, query values and authorization headers replaced."""
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m[1]}{MARK}@", text)
        if "?" in text:
            text = _QUERY.sub(_query, text)
    lowered = text.lower()
    if "authorization" in lowered:
        text = _AUTH.sub(_auth, text)
    if "Bearer" in text or "Basic" in text:
        text = _SCHEME.sub(lambda m: f"{m[1]} {MARK}", text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 4:
        return value
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: _redact_value(v, depth + 1) for k, v in value.items()}
    return value


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Install on a handler: every record it emits, from any logger, is redacted."""

    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        record.msg, record.args = redact_text(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, _redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install(handler: logging.Handler) -> None:
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
