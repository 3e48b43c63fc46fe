"""Compiled policy vs hand-written Python, same rules, same inputs, same run.

    .venv/bin/python bench/eval_ratio.py [--rounds 7] [--rules 2000]

1. Evaluation: the compiled demo policy (rules/demo/policy.rf) against a hand-written
   function implementing the same rules and building the same Decision. Both first run on
   every input and must agree; then rounds alternate between them and the median time per
   call is compared. Target: compiled <= 1.2x hand-written.
2. Compile time of a generated policy with --rules rules (parse, check, generate, compile).
   Target: < 2 s for 2,000 rules.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsl import CompiledPolicy, compile_policy  # noqa: E402
from dsl.decision import Action, Decision, Match  # noqa: E402
from dsl.facts import EventFacts, Facts, PhoneFacts  # noqa: E402
from dsl.lists import ListView  # noqa: E402
from dsl.runtime import masked  # noqa: E402

Values = Mapping[str, int | None]
Lists = Mapping[str, ListView]
EvalFn = Callable[[Facts, Values, Lists], Decision]


class SetList:
    def __init__(self, numbers: set[str]) -> None:
        self._numbers = numbers
        self._labels = {"risk": "risk2"}

    def __contains__(self, e164: object) -> bool:
        return e164 in self._numbers

    def labels(self, e164: str) -> Mapping[str, str] | None:
        return self._labels if e164 in self._numbers else None

    def __len__(self) -> int:
        return len(self._numbers)


BLACK_CARD = frozenset({"mvno", "data_only", "iot"})
CN_ONLY_APPS = frozenset({"shop", "ride"})


def hand_written(facts: Facts, values: Values, lists: Lists) -> Decision:
    """The demo policy, written by hand the way a careful engineer would."""
    phone, event = facts.phone, facts.event
    privacy = lists["privacy_numbers"]
    platforms = lists["code_platform_numbers"]
    hits = values.get("privacy_hits_1h")
    hits1 = values.get("privacy_hits_1h@1h")
    hits2 = values.get("privacy_hits_1h@2h")
    run = values.get("segment_run_today")
    codes = values.get("codes_today")
    apps = values.get("code_apps_today")
    unknown = None in (hits, hits1, hits2, run, codes, apps)
    matched: list[Match] = []
    on_list = phone.e164 in privacy
    register = event.scene == "register"
    if on_list and hits is not None:
        if hits <= 100:
            labels = privacy.labels(phone.e164) or {}
            matched.append(
                Match(
                    "privacy_number_low_volume",
                    Action.ALLOW,
                    f"privacy number ({labels.get('risk', '')}), {hits} list hits this hour",
                    False,
                    2,
                    ("privacy_number",),
                )
            )
        else:
            matched.append(
                Match(
                    "privacy_number_high_volume",
                    Action.REVIEW,
                    f"privacy-list hits above 100 this hour ({hits})",
                    False,
                    3,
                    ("privacy_number", "bulk"),
                )
            )
    if on_list:
        checks = (hits, hits1, hits2)
        if not any(h is not None and h <= 100 for h in checks):
            action = Action.REVIEW if None in checks else Action.BLOCK
            matched.append(
                Match(
                    "privacy_numbers_sustained",
                    action,
                    "privacy-list hits above 100/h for 3 hours",
                    False,
                    4,
                    ("privacy_number", "bulk"),
                )
            )
    if register and run is not None:
        if 5 <= run <= 19:
            matched.append(
                Match(
                    "consecutive_numbers_review",
                    Action.REVIEW,
                    f"{run} consecutive numbers of segment {phone.segment_prefix} registered today",
                    False,
                    3,
                    ("consecutive_numbers",),
                )
            )
        if run >= 20:
            matched.append(
                Match(
                    "consecutive_numbers_block",
                    Action.BLOCK,
                    f"{run} consecutive numbers of segment {phone.segment_prefix} registered today",
                    False,
                    4,
                    ("consecutive_numbers",),
                )
            )
    if register and phone.segment_kind in BLACK_CARD:
        matched.append(
            Match(
                "black_card_segment",
                Action.REVIEW,
                f"registration from a {phone.segment_kind} segment ({phone.segment_prefix})",
                False,
                3,
                ("black_card_segment",),
            )
        )
    if register and phone.segment_kind == "iot":
        matched.append(
            Match(
                "iot_number_register",
                Action.BLOCK,
                f"registration with an IoT number ({phone.segment_prefix} segment)",
                False,
                4,
                ("iot_number",),
            )
        )
    if register and phone.valid and phone.country_code != 86 and event.app_id in CN_ONLY_APPS:
        matched.append(
            Match(
                "foreign_number_cn_only_app",
                Action.REVIEW,
                f"a +{phone.country_code} number registering for {event.app_id},"
                " a mainland-only app",
                False,
                2,
                ("foreign_number",),
            )
        )
    if phone.e164 in platforms and event.scene in ("register", "sms_code"):
        labels = platforms.labels(phone.e164) or {}
        matched.append(
            Match(
                "code_platform_number",
                Action.REVIEW,
                f"number seen on a code-receiving platform ({labels.get('risk', '')})",
                False,
                3,
                ("code_platform",),
            )
        )
    if register and not phone.valid:
        matched.append(
            Match(
                "invalid_number_register",
                Action.BLOCK,
                f"registration with an invalid number ({masked(phone)})",
                False,
                4,
                ("invalid_number",),
            )
        )
    if event.scene == "sms_code":
        if codes is not None and codes > 4:
            matched.append(
                Match(
                    "many_codes_per_number",
                    Action.ALLOW,
                    f"{codes} codes to this number today",
                    False,
                    1,
                    ("many_codes",),
                )
            )
        if apps is not None and apps > 1:
            matched.append(
                Match(
                    "codes_for_many_apps",
                    Action.ALLOW,
                    f"codes for {apps} apps today",
                    False,
                    1,
                    ("multi_app_codes",),
                )
            )
    if register and run is not None and run >= 3:
        matched.append(
            Match(
                "consecutive_numbers_strict",
                Action.REVIEW,
                f"{run} consecutive numbers registered today (strict)",
                True,
                3,
                ("consecutive_numbers",),
            )
        )
    if on_list:
        checks = (hits, hits1, hits2)
        if all(h is not None and h > 50 for h in checks):
            matched.append(
                Match(
                    "privacy_numbers_strict",
                    Action.BLOCK,
                    "privacy-list hits above 50/h for 3 hours (strict)",
                    True,
                    4,
                    ("privacy_number", "bulk"),
                )
            )
    if not matched:
        return Decision(Action.ALLOW, 0, (), (), unknown, (), (), 0, "default action")
    risk = 0
    tags: list[str] = []
    best: Match | None = None
    for m in matched:
        if not m.shadow:
            if best is None or m.action > best.action:
                best = m
            risk = max(risk, m.risk_level)
            tags.extend(m.tags)
    action, why = (best.action, f"rule {best.rule}") if best else (Action.ALLOW, "default action")
    return Decision(
        action, risk, tuple(dict.fromkeys(tags)), tuple(matched), unknown, (), (), 0, why
    )


def make_inputs(n: int, seed: int = 7) -> list[tuple[Facts, Values]]:
    rnd = random.Random(seed)
    kinds = ["mobile"] * 6 + ["mvno", "data_only", "iot", ""]
    out: list[tuple[Facts, Values]] = []
    for i in range(n):
        on_list = rnd.random() < 0.3
        foreign = rnd.random() < 0.05
        if foreign:
            number = f"+1650{rnd.randrange(10**7):07d}"
        elif on_list:
            number = f"+86170000{i % 100000:05d}"
        else:
            number = f"+861{rnd.choice('36')}8{rnd.randrange(10**8):08d}"
        phone = PhoneFacts(
            number,
            rnd.random() > 0.05,
            "US" if foreign else "CN",
            "mobile",
            "",
            "" if foreign else rnd.choice(kinds),
            "" if foreign else number[3:7],
            1 if foreign else 86,
            number[2:] if foreign else number[3:],
        )
        event = EventFacts(
            scene=rnd.choice(["register", "login", "sms_code"]),
            app_id=rnd.choice(["shop", "video"]),
            occurred_at=1.77e9,
        )

        def v() -> int | None:
            return None if rnd.random() < 0.03 else rnd.randrange(0, 160)

        values = {
            "privacy_hits_1h": v(),
            "privacy_hits_1h@1h": v(),
            "privacy_hits_1h@2h": v(),
            "segment_run_today": rnd.choice([0, 1, 2, 3, 5, 8, 25, None]),
            "codes_today": rnd.randrange(0, 8),
            "code_apps_today": rnd.randrange(0, 3),
        }
        out.append((Facts("demo", phone, event), values))
    return out


def time_per_call(fn: EvalFn, inputs: list[tuple[Facts, Values]], lists: Lists) -> float:
    start = time.perf_counter()
    for facts, values in inputs:
        fn(facts, values, lists)
    return (time.perf_counter() - start) / len(inputs)


def generated_policy(rules: int) -> str:
    lines = [
        'settings { timezone = "Asia/Shanghai" }',
        'list vip from "lists/vip.csv"',
        "aggregate hits = count(per number, over 1h)",
        "aggregate seg = run(per segment, over today)",
        "aggregate apps = distinct(event.app_id, per number, over today)",
    ]
    actions = ["allow", "review", "block"]
    for i in range(rules):
        lines.append(
            f"rule r{i} {{\n"
            f'    when event.scene in {{"register", "s{i % 7}"}} and hits > {i % 50}\n'
            f"        and (seg between {i % 5} and {i % 5 + 10} or phone in vip)\n"
            f"        and sustained(apps > {i % 3}, 2d)\n"
            f'    then {actions[i % 3]}\n    risk {i % 5}\n    tags "t{i % 13}"\n'
            f'    reason "rule {i}: {{hits}} hits, run {{seg}}"\n}}'
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--inputs", type=int, default=20000)
    ap.add_argument("--rules", type=int, default=2000)
    args = ap.parse_args()

    text = (REPO / "rules/demo/policy.rf").read_text(encoding="utf-8")
    library = {
        f"_shared/{p.name}": p.read_text(encoding="utf-8")
        for p in sorted((REPO / "rules/_shared").glob("*.rf"))
    }
    policy: CompiledPolicy = compile_policy(
        {"demo/policy.rf": text}, library=library, tenant="demo"
    )
    inputs = make_inputs(args.inputs)
    lists: Lists = {
        "privacy_numbers": SetList(
            {f.phone.e164 for f, _ in inputs if f.phone.e164.startswith("+86170")}
        ),
        "code_platform_numbers": SetList(
            {f.phone.e164 for f, _ in inputs if f.phone.e164.startswith("+86168")}
        ),
    }
    compiled: EvalFn = policy.evaluate
    for facts, values in inputs:  # same decisions first, or the timing means nothing
        a, b = compiled(facts, values, lists), hand_written(facts, values, lists)
        if a != b:
            raise SystemExit(f"decisions differ:\n compiled {a}\n hand     {b}")

    comp, hand = [], []
    for _ in range(args.rounds):
        hand.append(time_per_call(hand_written, inputs, lists))
        comp.append(time_per_call(compiled, inputs, lists))
    c, h = statistics.median(comp), statistics.median(hand)
    print(f"evaluate, {len(inputs)} inputs x {args.rounds} rounds (median per call)")
    print(f"  hand-written  {h * 1e6:7.2f} us")
    print(f"  compiled      {c * 1e6:7.2f} us")
    print(f"  ratio         {c / h:7.2f}x   (target <= 1.20x)")

    source = generated_policy(args.rules)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        big = compile_policy({"gen/policy.rf": source}, tenant="gen")
        times.append(time.perf_counter() - start)
    print(
        f"compile {args.rules} rules ({len(source) // 1024} KiB source,"
        f" {len(big.aggregates)} aggregate specs)"
    )
    print(f"  median        {statistics.median(times):7.2f} s   (target < 2 s)")


if __name__ == "__main__":
    main()
