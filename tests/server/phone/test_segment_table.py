"""SegmentTable: the packaged table, longest-prefix lookup, and precise errors on bad rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.phone import SEGMENT_KINDS, Segment, SegmentTable

REFERENCE = Path("/work/shared/reference/cn_segments.csv")


def test_packaged_table_is_the_reference_copy() -> None:
    packaged = Path(__file__).parents[3] / "server" / "data" / "cn_segments.csv"
    if REFERENCE.exists():
        assert packaged.read_bytes() == REFERENCE.read_bytes()
    table = SegmentTable.load()
    assert len(table) == len(SegmentTable.load(packaged))
    assert {seg.kind for seg in table} == SEGMENT_KINDS


@pytest.mark.parametrize(
    ("national", "expected"),
    [
        ("17031234567", Segment("1703", "mvno", "China Mobile")),
        ("17001234567", Segment("1700", "mvno", "China Telecom")),
        ("17406123456", Segment("17406", "emergency", "MIIT")),
        ("17405123456", Segment("17405", "satellite", "China Satcom")),
        ("17491234567", Segment("1749", "satellite", "Inmarsat")),
        ("13491234567", Segment("1349", "satellite", "China Satcom")),
        ("13481234567", Segment("1348", "mobile", "China Mobile")),
        ("1440123456789", Segment("1440", "iot", "China Mobile")),
        ("13800138000", Segment("138", "mobile", "China Mobile")),
        ("17412", Segment("17412", "emergency", "MIIT")),
        ("14212345678", None),  # 142 is not allocated
        ("17413123456", None),  # 1741x beyond 17412 and not 1749
        ("12", None),
        ("", None),
    ],
)
def test_longest_prefix_wins(national: str, expected: Segment | None) -> None:
    assert SegmentTable.load().lookup(national) == expected


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segments.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_deployment_override_is_loaded(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "# local override\nprefix,kind,host_operator,notes\n\n"
        "199,mvno,Example,\n1990,iot,Other,x\n",
    )
    table = SegmentTable.load(path)
    assert table.lookup("19912345678") == Segment("199", "mvno", "Example")
    assert table.lookup("1990123456789") == Segment("1990", "iot", "Other")
    assert table.source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prefix,kind\n130,mobile\n", ":1: header lacks column(s) host_operator"),
        ("", ":1: empty segment table"),
        ("prefix,kind,host_operator\n13a,mobile,X\n", ":2: prefix '13a' is not all digits"),
        ("prefix,kind,host_operator\n,mobile,X\n", ":2: empty prefix"),
        ("prefix,kind,host_operator\n" + "1" * 14 + ",mobile,X\n", ":2: prefix '1111"),
        ("prefix,kind,host_operator\n130,cable,X\n", ":2: unknown kind 'cable'"),
        ("prefix,kind,host_operator\n130,mobile,\n", ":2: empty host_operator"),
        ("prefix,kind,host_operator\n130,mobile\n", ":2: expected 3 columns, found 2"),
        (
            "prefix,kind,host_operator\n130,mobile,X\n# c\n130,mvno,Y\n",
            ":4: duplicate prefix '130' (first on line 2)",
        ),
        (
            f'prefix,kind,host_operator\n"{"1" * 140_000}",mobile,X\n',
            ":2: not valid CSV (field larger than field limit",
        ),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(f"{path}{message}")):
        SegmentTable.load(path)


def test_every_bad_row_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, "prefix,kind,host_operator\nx,mobile,A\n130,mobile,B\n131,zzz,C\n")
    with pytest.raises(ValueError, match=re.escape(str(path))) as info:
        SegmentTable.load(path)
    lines = str(info.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{path}:2", f"{path}:4"]


def test_not_utf8_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "segments.csv"
    path.write_bytes(b"prefix,kind,host_operator\n130,mobile,\xff\n")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        SegmentTable.load(path)
