"""Redaction of credentials in log text (server/observability/redact.py)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from server.observability.logs import JsonFormatter
from server.observability.redact import RedactingFilter, redact_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'HTTP Request: GET http://u:pw@h:80/b.tar.gz?X-Amz-Signature=s&a=1 "HTTP/1.1 200 OK"',
            "HTTP Request: GET http://REDACTED@h:80/b.tar.gz?X-Amz-Signature=REDACTED&a=REDACTED "
            '"HTTP/1.1 200 OK"',
        ),
        ("https://token@h/x", "https://REDACTED@h/x"),
        ("redis://:secret@redis:6379/0", "redis://REDACTED@redis:6379/0"),
        ("rediss://user:p%40ss@r:6380/1", "rediss://REDACTED@r:6380/1"),
        ("see https://h/obj?sig", "see https://h/obj?REDACTED"),
        (
            "https://h/obj?sv=2024&sig=abc%2Bdef;se=1",
            "https://h/obj?sv=REDACTED&sig=REDACTED;se=REDACTED",
        ),
        ("'https://h/a?k=v' and https://h/b", "'https://h/a?k=REDACTED' and https://h/b"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: Bearer REDACTED"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "Basic REDACTED"}'),
        ("authorization=opaque-token-value", "authorization=REDACTED"),
        ("sent Bearer abcdefgh12345678 upstream", "sent Bearer REDACTED upstream"),
        # Left alone: no credential in sight.
        ("basic validation of the manifest", "basic validation of the manifest"),
        ("https://h:443/path/b.tar.gz", "https://h:443/path/b.tar.gz"),
        ("oci://registry.example/risk/rules:prod", "oci://registry.example/risk/rules:prod"),
        ("is 30 < 40? yes", "is 30 < 40? yes"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_the_filter_redacts_message_args_extras_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redact")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        raise ValueError("cannot fetch https://u:pw1@h/x?sig=pw2")
    except ValueError:
        logger.exception(
            "GET %s failed",
            "https://u:pw3@h/x",
            extra={"url": "https://u:pw4@h/", "urls": ["https://h/?t=pw5"], "n": 3},
        )
    line = json.loads(out.getvalue())
    text = out.getvalue()
    for secret in ("pw1", "pw2", "pw3", "pw4", "pw5"):
        assert secret not in text
    assert line["msg"] == "GET https://REDACTED@h/x failed"
    assert line["url"] == "https://REDACTED@h/"
    assert line["urls"] == ["https://h/?t=REDACTED"]
    assert line["n"] == 3
    assert "ValueError: cannot fetch https://REDACTED@h/x?sig=REDACTED" in line["exc"]
