"""A sample backtest report, the same every time: ``make report``.

    .venv/bin/python bench/sample_report.py --out build/report

bench/traffic.py's day (2026-03-01, seed 1, 2,000 users: ordinary sign-ups, a privacy-number
platform at night, a batch of consecutive MVNO numbers, a trickle of privacy numbers)
replayed through ``rules/`` and, as the candidate, the same rules with the run threshold
``RUN_BLOCK`` lowered from 20 to 10. Writes ``day.jsonl``, ``candidate-rules/``,
``report.html`` and ``report.json`` (what ``--json`` prints: the page's numbers) under
``--out``. Only the replay's own timing differs between two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO
from bench.traffic import TZ, generate

DAY = datetime(2026, 3, 1, tzinfo=TZ)
SEED = 1
USERS = 2000
CANDIDATE_CHANGE = ("const RUN_BLOCK = 20", "const RUN_BLOCK = 10")


def candidate_rules(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(REPO / "rules", dest)
    policy = dest / "demo" / "policy.rf"
    text = policy.read_text(encoding="utf-8")
    old, new = CANDIDATE_CHANGE
    if old not in text:
        raise SystemExit(f"{policy}: no {old!r} to change; update CANDIDATE_CHANGE")
    policy.write_text(text.replace(old, new), encoding="utf-8")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "build" / "report")
    ns = ap.parse_args()
    out: Path = ns.out
    out.mkdir(parents=True, exist_ok=True)
    events = out / "day.jsonl"
    with events.open("w", encoding="utf-8") as f:
        for e in generate(DAY, seed=SEED, users=USERS):
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    candidate = candidate_rules(out / "candidate-rules")
    ringfence = Path(sys.executable).parent / "ringfence"

    def shown(path: Path) -> str:
        # The page names the rules folders: relative to the repository wherever it lives.
        return os.path.relpath(path.resolve(), REPO)

    with (out / "report.json").open("w", encoding="utf-8") as summary:
        subprocess.run(
            [
                str(ringfence),
                "replay",
                shown(events),
                "--rules",
                "rules",
                "--against",
                shown(candidate),
                "--report",
                shown(out / "report.html"),
                "--json",
            ],
            stdout=summary,
            check=True,
            cwd=REPO,
        )
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    print(
        f"{report['policy']['events']} events, {report['diff']['changed']} decisions differ: "
        f"{out / 'report.html'} (numbers in {out / 'report.json'})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
