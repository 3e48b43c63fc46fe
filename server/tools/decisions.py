"""``ringfence replay --decisions FILE``: one record per replayed event, for pandas or DuckDB.

JSON lines by default; Parquet (through pyarrow, the ``parquet`` extra) when the file name
ends in ``.parquet``. Each record (docs/replay.md):

    line, request_id, key, occurred_at, phone (masked), label, outcome,
    action, score, risk_level, rules, shadow_rules, tags,
    aggregates: [{id, value, known}]       # EvaluateResponse.aggregates' shape
    against: {action, score, risk_level, rules, shadow_rules, tags, aggregates}   # --against

Records are written in the order events are decided (event time, then line). A replay
that finds its input out of order starts over in sorted order (server/tools/replay.py):
:meth:`DecisionWriter.restart` then empties the file, so it always holds the sorted
replay's records, once each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from dsl.decision import Decision
from dsl.pipeline import Decided
from server.phone.mask import mask

PARQUET_SUFFIX = ".parquet"
# Rows buffered before a Parquet row group is written: bounds memory on any input size.
PARQUET_BATCH = 50_000


class DecisionSink(Protocol):
    def write(self, rec: DecisionRecord) -> None: ...
    def restart(self) -> None: ...
    def close(self) -> None: ...


def aggregates(ids: Sequence[str], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every aggregate of the policy in policy order, as ``{id, value, known}``: a value the
    state could not give is ``known: false`` with ``value: null``."""
    out = []
    for i in ids:
        v = values.get(i)
        out.append({"id": i, "value": v, "known": v is not None})
    return out


def outcome_word(fraud: bool | None) -> str | None:
    return None if fraud is None else "fraud" if fraud else "good"


_MASKED: dict[str, str] = {}


def _masked(e164: str) -> str:
    """:func:`mask`, remembered: a number's events come in runs (a sign-up, its codes)."""
    found = _MASKED.get(e164)
    if found is None:
        if len(_MASKED) >= 100_000:
            _MASKED.clear()
        found = _MASKED[e164] = mask(e164)
    return found


def _decision(d: Decision) -> dict[str, Any]:
    return {
        "action": d.action.name.lower(),
        "score": d.score,
        "risk_level": d.risk_level,
        "rules": [m.rule for m in d.matches if not m.shadow],
        "shadow_rules": [m.rule for m in d.matches if m.shadow],
        "tags": list(d.tags),
    }


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One event's record: its fields, and the aggregate values still as the state gave
    them (each writer lays them out its own way, the JSON one without a dict per value)."""

    head: dict[str, Any]  # every field but aggregates and against
    ids: Sequence[str]
    values: Mapping[str, Any]
    against: tuple[dict[str, Any], Sequence[str], Mapping[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {**self.head, "aggregates": aggregates(self.ids, self.values)}
        if self.against is not None:
            head, ids, values = self.against
            out["against"] = {**head, "aggregates": aggregates(ids, values)}
        return out


def record(
    *,
    line: int,
    request_id: str,
    key: str,
    occurred_at: float,
    e164: str,
    label: str | None,
    fraud: bool | None,
    decided: Decided,
    ids: Sequence[str],
    against: tuple[Decided, Sequence[str]] | None = None,
) -> DecisionRecord:
    head: dict[str, Any] = {
        "line": line,
        "request_id": request_id,
        "key": key,
        "occurred_at": occurred_at,
        # Never the number itself: a decisions file is shared like a report.
        "phone": _masked(e164),
        "label": label,
        "outcome": outcome_word(fraud),
        **_decision(decided.decision),
    }
    other = None
    if against is not None:
        theirs, their_ids = against
        other = (_decision(theirs.decision), their_ids, theirs.values)
    return DecisionRecord(head, ids, decided.values, other)


class JsonLinesWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: IO[str] = path.open("w", encoding="utf-8")
        self._prefixes: dict[int, tuple[Sequence[str], list[str]]] = {}

    def _aggregates(self, ids: Sequence[str], values: Mapping[str, Any]) -> str:
        # The ids are the policy's: their JSON is made once per policy, not per event.
        found = self._prefixes.get(id(ids))
        if found is None or found[0] is not ids:
            found = self._prefixes[id(ids)] = (
                ids,
                ['{"id":' + json.dumps(i) + ',"value":' for i in ids],
            )
        parts = []
        for i, prefix in zip(ids, found[1], strict=True):
            v = values.get(i)
            if v is None:
                parts.append(prefix + 'null,"known":false}')
            elif type(v) is int:
                parts.append(f'{prefix}{v},"known":true}}')
            else:
                parts.append(f'{prefix}{json.dumps(v)},"known":true}}')
        return "[" + ",".join(parts) + "]"

    def write(self, rec: DecisionRecord) -> None:
        text = json.dumps(rec.head, separators=(",", ":"))
        text = text[:-1] + ',"aggregates":' + self._aggregates(rec.ids, rec.values)
        if rec.against is not None:
            head, ids, values = rec.against
            inner = json.dumps(head, separators=(",", ":"))
            text += ',"against":' + inner[:-1] + ',"aggregates":'
            text += self._aggregates(ids, values) + "}"
        self._f.write(text + "}\n")

    def restart(self) -> None:
        self._f.seek(0)
        self._f.truncate()

    def close(self) -> None:
        self._f.close()


def _parquet_schema(with_against: bool) -> Any:
    import pyarrow as pa

    agg = pa.list_(pa.struct([("id", pa.string()), ("value", pa.int64()), ("known", pa.bool_())]))
    decision = [
        ("action", pa.string()),
        ("score", pa.int64()),
        ("risk_level", pa.int64()),
        ("rules", pa.list_(pa.string())),
        ("shadow_rules", pa.list_(pa.string())),
        ("tags", pa.list_(pa.string())),
        ("aggregates", agg),
    ]
    fields = [
        ("line", pa.int64()),
        ("request_id", pa.string()),
        ("key", pa.string()),
        ("occurred_at", pa.float64()),
        ("phone", pa.string()),
        ("label", pa.string()),
        ("outcome", pa.string()),
        *decision,
    ]
    if with_against:
        fields.append(("against", pa.struct(decision)))
    return pa.schema(fields)


class ParquetWriter:
    """Rows buffered by the batch and written as row groups; one schema for every file, so
    files of many runs concatenate in DuckDB (``read_parquet('*.parquet')``)."""

    def __init__(self, path: Path, with_against: bool) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._schema = _parquet_schema(with_against)
        self._pq = pq
        self._rows: list[dict[str, Any]] = []
        self._writer: Any = pq.ParquetWriter(str(path), self._schema)

    def write(self, rec: DecisionRecord) -> None:
        self._rows.append(rec.to_dict())
        if len(self._rows) >= PARQUET_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        import pyarrow as pa

        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
        self._rows.clear()

    def restart(self) -> None:
        self._rows.clear()
        self._writer.close()
        self._writer = self._pq.ParquetWriter(str(self.path), self._schema)

    def close(self) -> None:
        self._flush()
        self._writer.close()


def parquet_problem() -> str:
    """Why Parquet cannot be written here ("" when it can)."""
    try:
        import pyarrow.parquet  # noqa: F401 (an optional extra)
    except ImportError as exc:
        return f"{exc.name or 'pyarrow'} is not installed"
    return ""


def open_sink(path: Path, *, with_against: bool) -> DecisionSink:
    if path.suffix.lower() == PARQUET_SUFFIX:
        return ParquetWriter(path, with_against)
    return JsonLinesWriter(path)
