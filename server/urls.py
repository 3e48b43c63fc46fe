"""Checks every URL the server accepts (state backends, bundles) goes through.

Client libraries percent-decode parts of a URL before they use them: redis-py sends the
decoded user name and password in its ``AUTH`` command, so ``redis://a%0D%0Aset%20x@...``
would put a second command on the wire. A URL holding a control character, written or
percent-encoded, is therefore refused wherever one is accepted. Messages never quote the
URL: it may carry a password.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

# C0 controls and DEL; after decoding, also as bytes (an encoded CR is %0D).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


class UnsafeURL(ValueError):
    pass


def has_control_characters(url: str) -> bool:
    """True when ``url`` holds a control character as written or once percent-decoded."""
    raw = url.encode("utf-8", "surrogatepass")
    return bool(_CONTROL.search(raw) or _CONTROL.search(unquote_to_bytes(url)))


def check_url(url: str, what: str) -> None:
    """Raise UnsafeURL (naming ``what``, never the URL) for a URL with control characters."""
    if has_control_characters(url):
        raise UnsafeURL(
            f"{what} holds a control character (CR, LF, NUL, ...; percent-encoded ones count "
            "too): refused"
        )
