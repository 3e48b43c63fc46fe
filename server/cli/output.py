"""Terminal output for the ``ringfence`` tools, through rich.

On a terminal: colour, boxed tables and progress bars (on stderr). Plain text when the
stream is not a terminal, when ``NO_COLOR`` is set (any non-empty value) or ``TERM=dumb``:
no escape codes at all, tables as aligned columns under a header line, no progress, and
no wrapping, so scripts and ``grep`` see one row per line. ``--json`` output never goes
through here.

Everything printed is data (rule names, reasons, app ids from events), so markup and
highlighting are off: a ``[red]`` in an app id prints as itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

# Wide enough that no table row is ever wrapped when not on a terminal.
PLAIN_WIDTH = 10_000


def is_plain(stream: IO[str]) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return True
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr), plain or rich as the stream and environment say."""
    stream = sys.stderr if stderr else sys.stdout
    common: dict[str, Any] = {"file": stream, "markup": False, "highlight": False, "emoji": False}
    if is_plain(stream):
        return Console(
            color_system=None, force_terminal=False, no_color=True, width=PLAIN_WIDTH, **common
        )
    return Console(force_terminal=True, **common)


def is_rich(out: Console) -> bool:
    return out.color_system is not None


def table(
    out: Console, *columns: str, title: str | None = None, right: Collection[str] = ()
) -> Table:
    """A table with these column headings; the columns named in ``right`` align right."""
    rich = is_rich(out)
    t = Table(
        title=title,
        title_justify="left",
        title_style="bold" if rich else "",
        box=box.SIMPLE_HEAD if rich else None,
        header_style="bold" if rich else "",
        show_edge=rich,
        pad_edge=False,
    )
    for name in columns:
        # On a terminal, long cells fold onto more lines rather than lose characters.
        t.add_column(
            name,
            justify="right" if name in right else "left",
            no_wrap=not rich,
            overflow="fold",
        )
    return t


def cells(*values: object) -> list[Text]:
    """Row cells as literal text (no markup, whatever the values hold)."""
    return [Text(str(v)) for v in values]


def status(out: Console, ok: bool, word: str | None = None) -> Text:
    text = word or ("ok" if ok else "FAIL")
    return Text(text, style=("green" if ok else "bold red") if is_rich(out) else "")


def emit(out: Console, renderable: Any) -> None:
    """Print a table (or any renderable); plain output loses the cells' trailing padding."""
    if is_rich(out):
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable, soft_wrap=True)
    out.file.write("".join(ln.rstrip() + "\n" for ln in captured.get().splitlines()))


def line(out: Console, text: str, style: str = "") -> None:
    """One line of literal text (diagnostics keep their caret alignment: never wrapped)."""
    out.print(Text(text, style=style if is_rich(out) else ""), soft_wrap=True)


@contextlib.contextmanager
def progress(total: int, what: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr while the body runs, when stderr is a terminal; yields the
    function to call with each step's size, or None (nothing to report to). Print nothing
    to the terminal while it runs: collect and print after."""
    if not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        # rich drops the colours itself under NO_COLOR; the bar stays, it is not colour.
        console=Console(stderr=True, markup=False, highlight=False),
        transient=True,
        # Never move stdout into the bar's stream: stdout may be a file while stderr is not.
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def counts(mapping: dict[str, int], order: Sequence[str] = ()) -> str:
    """``{"block": 3, "review": 1}`` -> ``"review 1, block 3"`` (in ``order`` when given)."""
    keys = [k for k in order if k in mapping] + sorted(k for k in mapping if k not in order)
    return ", ".join(f"{k} {mapping[k]}" for k in keys)
