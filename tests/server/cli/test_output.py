"""The tools' terminal output: rich on a terminal, plain text when not a terminal or with
NO_COLOR, ``--json`` untouched, and data never read as markup. Runs the real command
under a pseudo-terminal where a terminal is needed."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import RINGFENCE, RULES

ESCAPE = "\x1b["
SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour and style codes
BOX = re.compile("[─━│┃]")
MARKUP_APP = "[bold red]app[/bold red]"


@dataclass(frozen=True)
class Output:
    code: int
    stdout: str
    stderr: str


def run(*args: str, tty_out: bool = False, tty_err: bool = False, no_color: bool = False) -> Output:
    """The command with stdout and/or stderr on a pseudo-terminal (120 columns)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    env.update({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    if no_color:
        env["NO_COLOR"] = "1"
    masters: dict[str, int] = {}
    files: dict[str, int] = {}
    for name, wanted in (("out", tty_out), ("err", tty_err)):
        if wanted:
            master, slave = pty.openpty()
            masters[name], files[name] = master, slave
    proc = subprocess.Popen(
        [str(RINGFENCE), *args],
        stdout=files.get("out", subprocess.PIPE),
        stderr=files.get("err", subprocess.PIPE),
        stdin=subprocess.DEVNULL,
        env=env,
    )
    for fd in files.values():
        os.close(fd)
    got = {name: b"" for name in ("out", "err")}
    streams = {m: n for n, m in masters.items()}
    if proc.stdout is not None:
        streams[proc.stdout.fileno()] = "out"
    if proc.stderr is not None:
        streams[proc.stderr.fileno()] = "err"
    while streams:
        ready, _, _ = select.select(list(streams), [], [], 60)
        assert ready, "the command printed nothing for 60 s"
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's other end closed
                chunk = b""
            if chunk:
                got[streams[fd]] += chunk
            else:
                del streams[fd]
    code = proc.wait(60)
    for fd in masters.values():
        os.close(fd)
    # A terminal turns "\n" into "\r\n" on the way out.
    text = {k: v.decode().replace("\r\n", "\n") for k, v in got.items()}
    return Output(code, text["out"], text["err"])


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Consecutive MVNO numbers signing up to an app whose id looks like rich markup, and
    a candidate policy that blocks the run earlier: the app shows in the changes."""
    tmp = tmp_path_factory.mktemp("batch")
    events = tmp / "events.jsonl"
    lines = [
        {
            "tenant": "demo",
            "phone_number": f"+86171555500{k:02d}",
            "event": {"scene": "register", "app_id": MARKUP_APP, "occurred_at": 1_790_000_000 + k},
        }
        for k in range(25)
    ]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    candidate = tmp / "candidate"
    shutil.copytree(RULES, candidate)
    policy = candidate / "demo" / "policy.rf"
    policy.write_text(policy.read_text().replace("const RUN_BLOCK = 20", "const RUN_BLOCK = 10"))
    return events, candidate


COMMANDS = {
    "check": ("check", str(RULES)),
    "test": ("test", str(RULES)),
    "replay": ("replay", "{events}", "--rules", str(RULES), "--against", "{candidate}"),
}


MODES = {
    "piped": {},
    "terminal": {"tty_out": True},
    "terminal, NO_COLOR": {"tty_out": True, "no_color": True},
    "stderr on a terminal": {"tty_err": True},
}


class Runs:
    """Each (command, mode) run once for the module: every run costs a process start."""

    def __init__(self, batch: tuple[Path, Path]) -> None:
        self.batch = batch
        self._done: dict[tuple[str, str], Output] = {}

    def __call__(self, name: str, mode: str) -> Output:
        key = (name, mode)
        if key not in self._done:
            events, candidate = self.batch
            args = [a.format(events=events, candidate=candidate) for a in COMMANDS[name]]
            self._done[key] = run(*args, **MODES[mode])
        return self._done[key]


@pytest.fixture(scope="module")
def runs(batch: tuple[Path, Path]) -> Runs:
    return Runs(batch)


@pytest.mark.parametrize("name", COMMANDS)
def test_plain_when_not_a_terminal(name: str, runs: Runs) -> None:
    out = runs(name, "piped")
    assert out.code == 0, out.stderr
    assert ESCAPE not in out.stdout
    assert not BOX.search(out.stdout)
    assert all(line == line.rstrip() for line in out.stdout.splitlines())
    assert ESCAPE not in out.stderr  # and no progress bar
    assert "━" not in out.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_rich_on_a_terminal(name: str, runs: Runs) -> None:
    out = runs(name, "terminal")
    assert out.code == 0, out.stderr
    assert SGR.search(out.stdout)
    assert BOX.search(out.stdout)


@pytest.mark.parametrize("name", COMMANDS)
def test_no_color_on_a_terminal_prints_the_plain_text(name: str, runs: Runs) -> None:
    plain, no_color = runs(name, "piped"), runs(name, "terminal, NO_COLOR")
    assert no_color.code == 0, no_color.stderr
    # Only the replay's timing differs between two runs.
    timing = re.compile(r"in \d+\.\d\d s \([\d,]+/s\)")
    assert timing.sub("", no_color.stdout) == timing.sub("", plain.stdout)


@pytest.mark.parametrize("mode", ["piped", "terminal"])
def test_data_is_never_read_as_markup(runs: Runs, mode: str) -> None:
    out = runs("replay", mode)
    assert out.code == 0, out.stderr
    assert MARKUP_APP in SGR.sub("", out.stdout)


@pytest.mark.parametrize("name", ["check", "replay"])
def test_progress_bar_on_a_terminal(name: str, runs: Runs) -> None:
    shown = runs(name, "stderr on a terminal")
    assert shown.code == 0
    assert "━" in shown.stderr  # the bar
    assert name in shown.stderr  # its label
    assert ESCAPE not in shown.stdout  # stdout, not a terminal, stays plain


def test_json_is_unchanged_on_a_terminal(batch: tuple[Path, Path]) -> None:
    events, candidate = batch
    args = ["replay", str(events), "--rules", str(RULES), "--against", str(candidate), "--json"]
    piped = run(*args)
    tty = run(*args, tty_out=True, tty_err=True)
    assert tty.code == piped.code == 0
    a, b = json.loads(piped.stdout), json.loads(tty.stdout)
    for report in (a, b):
        for side in ("policy", "against"):
            report[side].pop("seconds")
            report[side].pop("events_per_second")
    assert a == b
