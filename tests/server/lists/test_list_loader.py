"""load_list and ListIndex: entry kinds, lookup precedence, every error kind, expiry, scale."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.lists import ListView
from server.lists import ListIndex, ListIssue, ListLoadError, load_list
from server.lists.index import RangeSpec
from server.phone import PhoneParser

TODAY = date(2026, 1, 15)
Write = Callable[[str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def _write(text: str) -> Path:
        path = tmp_path / "list.csv"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture(scope="module")
def parser() -> PhoneParser:
    return PhoneParser()


def _load(path: Path, parser: PhoneParser, region: str = "CN") -> ListIndex:
    return load_list(path, name="black", default_region=region, parser=parser, today=TODAY)


@pytest.mark.parametrize(
    ("entry", "hit", "miss"),
    [
        ("+8617012345678", "+8617012345678", "+8617012345679"),
        ("17012345678", "+8617012345678", "+8617012345679"),  # national, default region CN
        ("170-1234-5678", "+8617012345678", "+8617012345679"),
        ("+86 170 1234 5678", "+8617012345678", "+8617012345679"),
        ("008617012345678", "+8617012345678", "+8617012345679"),
        ("+861440123456789", "+861440123456789", "+861440123456788"),  # IoT, 13 digits
        ("+16502530000", "+16502530000", "+16502530001"),
        ("+86170123*", "+8617012345678", "+8617022345678"),
        ("+86170123*", "+86170123", "+8617012"),  # a prefix matches itself, not shorter
        ("170123*", "+8617012399999", "+8617022345678"),  # national prefix
        ("+8617000000000..+8617000000999", "+8617000000500", "+8617000001000"),
        ("+8617000000000..+8617000000999", "+8617000000000", "+8616999999999"),
        ("+8617000000000..+8617000000999", "+8617000000999", "+86170000009990"),
        ("17000000000..17000000999", "+8617000000999", "+8617000001000"),
        ("+8617000000000 .. +8617000000000", "+8617000000000", "+8617000000001"),
    ],
)
def test_entry_kinds(write: Write, parser: PhoneParser, entry: str, hit: str, miss: str) -> None:
    index = _load(write(f"entry,risk\n{entry},risk2\n"), parser)
    assert len(index) == 1
    assert hit in index
    assert index.labels(hit) == {"risk": "risk2"}
    assert miss not in index
    assert index.labels(miss) is None


def test_national_numbers_use_the_given_default_region(write: Write, parser: PhoneParser) -> None:
    index = _load(write("entry,risk\n(650) 253-0000,high\n"), parser, region="US")
    assert "+16502530000" in index


def test_index_is_a_list_view(write: Write, parser: PhoneParser) -> None:
    view: ListView = _load(write("entry\n+8617012345678\n"), parser)
    assert "+8617012345678" in view
    assert view.labels("+8617012345678") == {}


@pytest.mark.parametrize(
    "probe",
    [
        8617012345678,
        None,
        "",
        "+",
        "8617012345678",  # not E.164: the caller normalises first
        "+86 170 1234 5678",
        "+08617012345678",
        "+８６１７０１２３４５６７８",
        "+8617012345678\n",
    ],
)
def test_lookups_of_non_e164_miss(write: Write, parser: PhoneParser, probe: object) -> None:
    index = _load(write("entry\n+8617012345678\n+86*\n+8600000000000..+8699999999999\n"), parser)
    assert probe not in index
    if isinstance(probe, str):
        assert index.labels(probe) is None


PRECEDENCE = """\
entry,level
+8617012345678,exact
+86170123*,prefix8
+861701*,prefix6
+8617000000000..+8617099999999,wide
+8617012300000..+8617012399999,narrow
+8617012340000..+8617012349999,narrowest
+8618000000000..+8618099999999,other
"""


@pytest.mark.parametrize(
    ("number", "level"),
    [
        ("+8617012345678", "exact"),  # exact beats every prefix and range
        ("+8617012345679", "prefix8"),  # longest prefix beats shorter prefix and ranges
        ("+8617014000000", "prefix6"),
        ("+8617012340001", "prefix8"),  # prefix beats the narrowest range
        ("+8617020000000", "wide"),
        ("+8617050000000", "wide"),
        ("+8618050000000", "other"),
        ("+8619000000000", None),
    ],
)
def test_label_precedence(
    write: Write, parser: PhoneParser, number: str, level: str | None
) -> None:
    index = _load(write(PRECEDENCE), parser)
    labels = index.labels(number)
    assert (labels["level"] if labels is not None else None) == level


@pytest.mark.parametrize(
    ("number", "level"),
    [
        ("+8613000000000", "wide"),
        ("+8613000000100", "narrow"),
        ("+8613000000150", "narrowest"),
        ("+8613000000199", "narrow"),
        ("+8613000000200", "wide"),
        ("+8613000000500", "first-of-equal"),  # two equally narrow ranges: the earlier line wins
        ("+8613000000599", "second-of-equal"),
        ("+8613000009999", "wide"),
        ("+8613000010000", None),
    ],
)
def test_narrowest_range_wins(write: Write, parser: PhoneParser, number: str, level: str) -> None:
    text = (
        "entry,level\n"
        "+8613000000000..+8613000009999,wide\n"
        "+8613000000100..+8613000000199,narrow\n"
        "+8613000000150..+8613000000159,narrowest\n"
        "+8613000000500..+8613000000549,first-of-equal\n"
        "+8613000000520..+8613000000599,second-of-equal\n"
    )
    labels = _load(write(text), parser).labels(number)
    assert (labels["level"] if labels is not None else None) == level


def _narrowest(ranges: list[tuple[int, int, int]], number: int) -> int | None:
    covering = [(hi - lo, order, label) for order, (lo, hi, label) in enumerate(ranges)]
    hits = [c for c, (lo, hi, _) in zip(covering, ranges, strict=True) if lo <= number <= hi]
    return min(hits)[2] if hits else None


@settings(max_examples=300, deadline=None)
@given(
    ranges=st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 20), st.integers(0, 4)), max_size=12
    ),
    probes=st.lists(st.integers(0, 90), min_size=1, max_size=20),
)
def test_range_flattening_matches_brute_force(
    ranges: list[tuple[int, int, int]], probes: list[int]
) -> None:
    base = 8613000000000
    spans = [(base + lo, base + lo + width, label) for lo, width, label in ranges]
    # Identical spans: the later line replaces the earlier one, as load_list does.
    unique = {(lo, hi): (lo, hi, label) for lo, hi, label in spans}
    order = {key: i for i, key in enumerate((lo, hi) for lo, hi, _ in spans)}
    specs = [RangeSpec(lo, hi, label, order[(lo, hi)]) for lo, hi, label in unique.values()]
    index = ListIndex(
        name="r",
        path="<mem>",
        label_columns=("label",),
        labels=[{"label": str(i)} for i in range(5)],
        exact={},
        prefixes={},
        ranges=specs,
    )
    ordered = sorted(specs, key=lambda s: s.order)
    reference = [(s.low, s.high, s.label) for s in ordered]
    for probe in probes:
        number = base + probe
        expected = _narrowest(reference, number)
        got = index.labels(f"+{number}")
        assert (int(got["label"]) if got is not None else None) == expected


def test_comments_blank_lines_bom_crlf_and_quotes(tmp_path: Path, parser: PhoneParser) -> None:
    path = tmp_path / "list.csv"
    text = (
        "# vendor feed, 2026-01\r\n"
        "\r\n"
        "entry, risk, source\r\n"
        "  # indented comment\r\n"
        '+8617012345678, risk2, "vendor, inc."\r\n'
        '"+8617012345679",risk1,"say ""hi"""\r\n'
    )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    index = _load(path, parser)
    assert index.label_columns == ("risk", "source")
    assert index.labels("+8617012345678") == {"risk": "risk2", "source": "vendor, inc."}
    assert index.labels("+8617012345679") == {"risk": "risk1", "source": 'say "hi"'}


def test_labels_are_interned(write: Write, parser: PhoneParser) -> None:
    index = _load(write("entry,risk\n+8617012345678,risk2\n+8617012345679,risk2\n"), parser)
    first, second = index.labels("+8617012345678"), index.labels("+8617012345679")
    assert first is second
    with pytest.raises(TypeError):
        first["risk"] = "x"  # type: ignore[index]


def test_expired_entries_are_skipped_and_counted(write: Write, parser: PhoneParser) -> None:
    text = (
        "entry,risk,expires\n"
        "+8617012345671,risk2,2026-01-14\n"  # yesterday: expired
        "+8617012345672,risk2,2026-01-15\n"  # today: still on
        "+8617012345673,risk2,2027-01-01\n"
        "+8617012345674,risk2,\n"  # no expiry
        "+86171*,risk2,2020-01-01\n"
        "17012345675,risk2,2020-01-01\n"
        "+8616200000000..+8616200000009,risk2,2020-01-01\n"
    )
    index = _load(write(text), parser)
    assert index.stats.skipped_expired == 4
    assert (index.stats.entries, index.stats.prefixes, index.stats.ranges) == (3, 0, 0)
    assert "+8617012345671" not in index
    assert "+8617012345672" in index
    assert index.labels("+8617012345672") == {
        "risk": "risk2",
        "expires": "2026-01-15",
    }
    assert "+8617100000000" not in index
    assert "+8617012345675" not in index
    assert "+8616200000005" not in index


def test_today_defaults_to_the_local_date(write: Write, parser: PhoneParser) -> None:
    path = write("entry,expires\n+8617012345671,2000-01-01\n+8617012345672,9999-12-31\n")
    index = load_list(path, name="x", parser=parser)
    assert (len(index), index.stats.skipped_expired) == (1, 1)


def test_a_repeated_entry_is_an_update(write: Write, parser: PhoneParser) -> None:
    text = (
        "entry,risk\n"
        "+8617012345678,risk1\n"
        "17012345678,risk3\n"  # same number, national form: later line wins
        "+86170*,risk1\n"
        "+86170*,risk2\n"
        "+8616200000000..+8616200000009,risk1\n"
        "+8616200000000..+8616200000009,risk3\n"
    )
    index = _load(write(text), parser)
    assert index.labels("+8617012345678") == {"risk": "risk3"}
    assert index.labels("+8617000000000") == {"risk": "risk2"}
    assert index.labels("+8616200000001") == {"risk": "risk3"}
    assert (len(index), index.stats.duplicates) == (3, 3)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("entry,risk\n+8617012345678\n", 2, "expected 2 columns, found 1"),
        ("entry,risk\n+8617012345678,a,b\n", 2, "expected 2 columns, found 3"),
        ("entry,risk\nhello,risk2\n", 2, "not a phone number: 'h' (character 1) is not a digit"),
        # A letter O for a zero: an error, never a shorter number (phonenumbers stops there).
        ("entry\n+86170000000O1\n", 2, "not a phone number: 'O' (character 13) is not a digit"),
        ("entry\n+8617000000abc\n", 2, "not a phone number: 'a' (character 12) is not a digit"),
        ("entry\n170 0000 00O1\n", 2, "not a phone number: 'O' (character 12) is not a digit"),
        ("entry,risk\n,risk2\n", 2, "empty entry"),
        ("entry,risk\n+999123456,risk2\n", 2, "not a phone number: unknown country code"),
        ("entry,risk\n+8612345678901234567,r\n", 2, "not a phone number: more than 15 digits"),
        ("entry,risk\n+86170..17O,r\n", 2, "bad range: not a phone number"),
        ("entry,risk\n+8617000000000..,r\n", 2, "bad range: expected <first>..<last>"),
        ("entry,risk\n+8617000000000..x,r\n", 2, "bad range: not a phone number"),
        (
            "entry,risk\n+8617000000000..+861700000099,r\n",
            2,
            "bad range: both ends must have the same number of digits",
        ),
        (
            "entry,risk\n+8617000000999..+8617000000000,r\n",
            2,
            "reversed range: first is greater than last",
        ),
        ("entry,risk\n+86x*,r\n", 2, "bad prefix: expected '+' and digits before '*'"),
        ("entry,risk\n*,r\n", 2, "bad prefix: expected digits before '*'"),
        ("entry,risk\n0170*,r\n", 2, "bad prefix: a national prefix must not start with 0"),
        ("entry,risk\n+0170*,r\n", 2, "bad prefix: no country code starts with 0"),
        ("entry,risk\n+" + "1" * 16 + "*,r\n", 2, "bad prefix: more than 15 digits"),
        ("entry,expires\n+8617012345678,2026-13-01\n", 2, "bad date '2026-13-01'"),
        ("entry,expires\n+8617012345678,soon\n", 2, "bad date 'soon' in column 'expires'"),
        ("number,risk\n+8617012345678,r\n", 1, "header must start with column 'entry'"),
        ("entry,risk,risk\n+8617012345678,r,r\n", 1, "column 'risk' appears twice in header"),
        ("entry,,risk\n+8617012345678,r,r\n", 1, "empty column name in header"),
        ("# only a comment\n\n", 1, "no header row"),
        ("", 1, "no header row"),
        ('entry,risk\n"+8617012345678",r\rx\n', 2, "a line break (CR) inside a field"),
        (f'entry,risk\n"+8617012345678","{"x" * 140_000}"\n', 2, "a quoted field longer than"),
        ('entry,ri\rsk,"note"\n', 1, "a line break (CR) inside a field"),
    ],
)
def test_every_error_kind_names_file_and_line(
    write: Write, parser: PhoneParser, text: str, line: int, message: str
) -> None:
    path = write(text)
    with pytest.raises(ListLoadError) as info:
        _load(path, parser)
    (issue,) = info.value.issues
    assert (issue.path, issue.line) == (str(path), line)
    assert issue.message.startswith(message)
    assert str(info.value).startswith(f"{path}:{line}: {message}")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("170*", "bad prefix: national prefix needs a known default_region"),
        ("13800138000", "not a phone number (no country code and no default_region)"),
    ],
)
def test_national_entries_without_a_region_are_errors(
    write: Write, parser: PhoneParser, entry: str, message: str
) -> None:
    path = write(f"entry\n+8613800138000\n{entry}\n")
    with pytest.raises(ListLoadError) as info:
        _load(path, parser, region="")
    assert str(info.value) == f"{path}:3: {message}"


def test_every_bad_line_is_reported_and_nothing_is_returned(
    write: Write, parser: PhoneParser
) -> None:
    text = (
        "# header next\n"
        "entry,risk,expires\n"
        "+8617012345678,risk2,\n"
        "hello,risk2,\n"
        "+8617012345679,risk2\n"
        "\n"
        "+8617000000999..+8617000000000,risk2,\n"
        "+8617012345670,risk2,someday\n"
        "+8617012345671,risk2,\n"
    )
    path = write(text)
    with pytest.raises(ListLoadError) as info:
        _load(path, parser)
    assert [i.line for i in info.value.issues] == [4, 5, 7, 8]
    assert all(isinstance(i, ListIssue) and i.path == str(path) for i in info.value.issues)
    assert str(info.value).splitlines() == [str(i) for i in info.value.issues]


def test_error_messages_never_echo_the_number(write: Write, parser: PhoneParser) -> None:
    path = write("entry,risk\n13800138000 x 9,r\n+8617000000999..+8617000000000,r\n")
    with pytest.raises(ListLoadError) as info:
        _load(path, parser)
    assert "13800138000" not in str(info.value)
    assert "17000000999" not in str(info.value)


def test_str_of_a_huge_error_is_bounded_but_issues_are_all_kept(
    write: Write, parser: PhoneParser
) -> None:
    path = write("entry,risk\n" + "x,r\n" * 500)
    with pytest.raises(ListLoadError) as info:
        _load(path, parser)
    assert len(info.value.issues) == 500
    lines = str(info.value).splitlines()
    assert len(lines) == 201
    assert lines[-1] == "... and 300 more issues"


def test_unreadable_files(tmp_path: Path, parser: PhoneParser) -> None:
    missing = tmp_path / "missing.csv"
    with pytest.raises(ListLoadError) as info:
        _load(missing, parser)
    assert info.value.issues[0].path == str(missing)
    assert info.value.issues[0].message.startswith("cannot read")

    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"entry,risk\n+8617012345678,r\n+8617012345679,\xff\xfe\n")
    with pytest.raises(ListLoadError) as info:
        _load(binary, parser)
    assert (info.value.issues[0].line, info.value.issues[0].message) == (3, "not valid UTF-8")


def test_loading_leaves_the_request_cache_alone(write: Write) -> None:
    parser = PhoneParser()
    _load(write("entry\n17012345678\n+8617012345679\n"), parser)
    assert parser.cache_info.size == 0


def test_fifty_thousand_entries_round_trip(tmp_path: Path, parser: PhoneParser) -> None:
    rng = random.Random(20260115)
    numbers = rng.sample(range(10**8), 50_000)
    risks, sources = ["risk1", "risk2", "risk3"], ["vendorA", "vendorB", "ops"]
    expected: dict[str, dict[str, str]] = {}
    lines = ["entry,risk,source,added,expires"]
    for i, n in enumerate(numbers):
        e164 = f"+86{rng.choice(['170', '171', '162', '165', '167'])}{n:08d}"
        labels = {
            "risk": rng.choice(risks),
            "source": rng.choice(sources),
            "added": f"2025-{1 + i % 12:02d}-01",
            "expires": "" if i % 3 else "2030-01-01",
        }
        if i % 1000 == 0:
            labels["expires"] = "2020-01-01"
        else:
            expected[e164] = labels  # distinct n, so every number is new
        # National form for a slice of the file: the phonenumbers fallback path.
        entry = e164 if i % 50 else e164[3:]
        lines.append(",".join([entry, *labels.values()]))
    path = tmp_path / "mid.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    index = _load(path, parser)
    assert index.stats.entries == len(expected)
    assert index.stats.skipped_expired == 50
    assert len(index) == len(expected)
    for e164, labels in expected.items():
        assert index.labels(e164) == labels
    absent = {f"+86{p}{n:08d}" for p in ("170", "171") for n in rng.sample(range(10**8), 2000)}
    for e164 in absent - expected.keys():
        assert e164 not in index
