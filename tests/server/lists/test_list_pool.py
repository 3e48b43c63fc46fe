"""Big lists are parsed in a child process (server/lists/pool.py) and arrive exactly as a
parse in place would make them: same answers, same statistics, same errors with their
lines; a server reloading a big list does it through the child."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from support import request, running_server

from server.lists import ListLoadError, parse_list
from server.lists.pool import ListPool
from server.phone import PhoneParser

HEADER = b"entry,risk,source\n"


def big_list(rows: int) -> bytes:
    lines = [HEADER]
    lines += [f"+86171{i:08d},risk{i % 3},vendor\n".encode() for i in range(rows)]
    lines += [b"+8614*,risk3,ops\n", b"+8619200000000..+8619200004999,risk2,ops\n"]
    lines += [b"138 0013 8000,national,ops\n"]  # needs the phone parser (default region)
    return b"".join(lines)


@pytest.fixture
def pool() -> ListPool:
    return ListPool(threshold=1)  # every list goes to a child


def probes() -> list[str]:
    return ["+8617100000007", "+8617100029999", "+8614512345678", "+8619200001234",
            "+8613800138000", "+8617199999999", "+12025550123"]  # fmt: skip


def test_a_list_parsed_in_a_child_answers_as_one_parsed_in_place(pool: ListPool) -> None:
    raw = big_list(30_000)
    parser = PhoneParser()
    here = parse_list(raw, "demo/lists/l.csv", name="l", default_region="CN", parser=parser)
    there = pool.parse(raw, "demo/lists/l.csv", name="l", default_region="CN", parser=parser)
    assert pool.parsed_in_child == 1
    assert there.stats == here.stats
    assert there.label_columns == here.label_columns
    for number in probes():
        assert there.labels(number) == here.labels(number), number
    assert dict(there.labels("+8617100000007") or {}) == {"risk": "risk1", "source": "vendor"}
    assert pickle.loads(pickle.dumps(there)).labels("+8614512345678") == there.labels(
        "+8614512345678"
    )


def test_errors_come_back_with_their_lines(pool: ListPool) -> None:
    raw = HEADER + b"+8617100000001,risk1,a\nnot a number,risk1,a\n+86171,x\n"
    with pytest.raises(ListLoadError) as info:
        pool.parse(raw, "demo/lists/l.csv", name="l", default_region="CN", parser=PhoneParser())
    assert [(i.path, i.line) for i in info.value.issues] == [
        ("demo/lists/l.csv", 3),
        ("demo/lists/l.csv", 4),
    ]


def test_small_lists_stay_in_place() -> None:
    pool = ListPool()
    pool.parse(big_list(10), "l.csv", name="l", default_region="CN", parser=PhoneParser())
    assert pool.parsed_in_child == 0


async def test_a_server_reloads_a_big_list_through_the_child(rules_copy: Path) -> None:
    lists = rules_copy / "demo" / "lists" / "privacy_numbers.csv"
    text = lists.read_text().splitlines()
    head = text[: next(i for i, line in enumerate(text) if line.startswith("entry,")) + 1]
    rows = [f"+86170{i:08d},risk2,vendorA,2025-01-01," for i in range(60_000)]
    lists.write_text("\n".join([*head, *rows]) + "\n")
    assert lists.stat().st_size > (1 << 20)

    async def tags(s, number: str) -> list[str]:  # type: ignore[no-untyped-def]
        resp = await s.decisions.Evaluate(request(number, dry_run=True), timeout=5)
        return list(resp.tags)

    async with running_server(rules_copy) as s:
        assert s.server.list_pool.parsed_in_child == 1
        assert "privacy_number" in await tags(s, "+8617000012345")
        assert "privacy_number" in await tags(s, "+8617000000000")
        lists.write_text("\n".join([*head, *rows[1:]]) + "\n")  # the first entry removed
        await s.server.reload()
        assert s.server.list_pool.parsed_in_child == 2
        assert "privacy_number" in await tags(s, "+8617000012345")
        assert "privacy_number" not in await tags(s, "+8617000000000")
