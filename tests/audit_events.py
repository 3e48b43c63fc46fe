"""An audit hook that records what policy code does while a test watches.

CPython raises audit events for imports, file opens, process starts, code creation and
walks into restricted attributes (``object.__getattr__`` on ``__globals__``, frames, ...).
Generated policy code must do none of these when it is built or evaluated: a test wraps
the call in :func:`watching` and asserts the recorded list is empty.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Events that mean code ran that no policy should run. Our own compile()/exec() of the
# verified tree raise "compile"/"exec", so those are checked by filename instead.
_FORBIDDEN_PREFIXES = (
    "import",
    "open",
    "os.",
    "subprocess.",
    "shutil.",
    "socket.",
    "ctypes.",
    "object.__getattr__",
    "object.__setattr__",
    "object.__delattr__",
    "sys._getframe",
    "sys.settrace",
    "sys.setprofile",
    "code.__new__",
    "function.__new__",
    "builtins.input",
    "pickle.find_class",
    "marshal.load",
)

_state: dict[str, list[tuple[str, str]] | None] = {"events": None}


def _hook(event: str, args: tuple[object, ...]) -> None:
    events = _state["events"]
    if events is None:
        return
    if event.startswith(_FORBIDDEN_PREFIXES):
        events.append((event, repr(args)[:200]))
    elif event == "compile" and not (args and isinstance(args[0], ast.AST)):
        # The compiler compiles verified trees; compiling text is what an exploit does.
        events.append((event, repr(args)[:200]))
    elif event == "exec" and "<ringfence policy" not in repr(args):
        events.append((event, repr(args)[:200]))


sys.addaudithook(_hook)


@contextmanager
def watching() -> Iterator[list[tuple[str, str]]]:
    """Record forbidden audit events raised inside the block."""
    events: list[tuple[str, str]] = []
    _state["events"] = events
    try:
        yield events
    finally:
        _state["events"] = None
