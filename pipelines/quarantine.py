"""Row checks of the extract: every row read is either accepted into raw/ or quarantined with a reason.

The checks, per table (first failing check wins, so each row has exactly one reason):
`unknown_user` (user_id not in app.users), `unknown_event_type` (user_events.event_type outside
`KNOWN_EVENT_TYPES`), `malformed_json` (a JSON column that is not an object, or not an array for
pages_visited), `oversized_payload` (a JSON column longer than `settings.max_payload_bytes`),
`negative_amount` (a money column that cannot be negative), `future_timestamp` (an event time later than
the interval end plus `settings.future_tolerance_minutes`). A reason reads `<check>:<column>`.
Checks compare with the interval end, never the wall clock, so a rerun quarantines the same rows.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from fincoach.settings import get_settings
from pipelines.event_schemas import KNOWN_EVENT_TYPES

REASON_COLUMN = "reason"
JSON_OBJECT_COLUMNS: dict[str, tuple[str, ...]] = {
    "user_events": ("event_data", "context"),
    "financial_decisions": ("context",),
}
JSON_ARRAY_COLUMNS: dict[str, tuple[str, ...]] = {"user_sessions": ("pages_visited",)}
# The key the values of a JSON array column stand for, for the PII scrub (pipelines.privacy).
JSON_ARRAY_KEYS: dict[str, str] = {"pages_visited": "page"}
NON_NEGATIVE: dict[str, tuple[str, ...]] = {
    "users": ("monthly_income",),
    "goals": ("target_amount", "current_amount"),
    "debts": ("balance", "min_payment"),
    "financial_decisions": ("amount",),
}
EVENT_TIME: dict[str, str] = {
    "transactions": "occurred_at",
    "user_events": "timestamp",
    "financial_decisions": "timestamp",
    "user_sessions": "start_time",
    "coaching_interactions": "served_at",
}


class ReconciliationError(AssertionError):
    """Rows were lost or doubled between the read and the accepted/quarantined split (a bug, never data)."""


@dataclass
class Split:
    """The outcome of checking one extract: accepted rows, quarantined rows (with `reason`), counts."""

    accepted: pa.Table
    quarantined: pa.Table
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """extracted, accepted and quarantined row counts."""
        return {
            "extracted": self.accepted.num_rows + self.quarantined.num_rows,
            "accepted": self.accepted.num_rows,
            "quarantined": self.quarantined.num_rows,
        }


def _checks(table: str, rows: pa.Table, known_users: pa.Array | None, interval_end: datetime) -> list:
    """(reason, mask of failing rows) in priority order."""
    s = get_settings()
    out: list[tuple[str, pa.ChunkedArray]] = []
    if table != "users" and known_users is not None and "user_id" in rows.column_names:
        out.append(("unknown_user:user_id", pc.invert(pc.is_in(rows["user_id"], known_users))))
    if table == "user_events":
        types = pa.array(sorted(KNOWN_EVENT_TYPES), pa.string())
        out.append(("unknown_event_type:event_type", pc.invert(pc.is_in(rows["event_type"], types))))
    for col in JSON_OBJECT_COLUMNS.get(table, ()):
        out.append((f"malformed_json:{col}", pc.invert(pc.starts_with(rows[col], "{"))))
    for col in JSON_ARRAY_COLUMNS.get(table, ()):
        out.append((f"malformed_json:{col}", pc.invert(pc.starts_with(rows[col], "["))))
    for col in (*JSON_OBJECT_COLUMNS.get(table, ()), *JSON_ARRAY_COLUMNS.get(table, ())):
        out.append((f"oversized_payload:{col}", pc.greater(pc.binary_length(rows[col]), s.max_payload_bytes)))
    for col in NON_NEGATIVE.get(table, ()):
        out.append((f"negative_amount:{col}", pc.less(rows[col], 0)))
    if table in EVENT_TIME:
        limit = pa.scalar(interval_end + timedelta(minutes=s.future_tolerance_minutes), pa.timestamp("us", "UTC"))
        out.append((f"future_timestamp:{EVENT_TIME[table]}", pc.greater(rows[EVENT_TIME[table]], limit)))
    return out


def split_rows(table: str, rows: pa.Table, known_users: pa.Array | None, interval_end: datetime) -> Split:
    """Split `rows` of app.<table> into accepted and quarantined (column `reason`), keeping row order."""
    checks = [(name, pc.fill_null(failing, False))  # a NULL amount or timestamp is not a failure of that check
              for name, failing in _checks(table, rows, known_users, interval_end)]
    bad = functools.reduce(pc.or_, (failing for _, failing in checks)) if checks and rows.num_rows else None
    if bad is None or not pc.any(bad).as_py():  # the usual case: no reason to build, no copy of the rows
        accepted, quarantined = rows, rows.slice(0, 0).append_column(REASON_COLUMN, pa.array([], pa.string()))
    else:
        reason = pa.nulls(int(pc.sum(bad).as_py()), pa.string())
        for name, failing in checks:  # on the failing rows only: the first failing check names the reason
            failing = pc.filter(failing, bad)
            reason = pc.if_else(pc.and_(pc.is_null(reason), failing), pa.scalar(name), reason)
        accepted = rows.filter(pc.invert(bad))
        quarantined = rows.filter(bad).append_column(REASON_COLUMN, reason)
    reasons = dict(sorted(Counter(quarantined[REASON_COLUMN].to_pylist()).items()))
    split = Split(accepted, quarantined, reasons)
    if split.counts["extracted"] != rows.num_rows or sum(reasons.values()) != quarantined.num_rows:
        raise ReconciliationError(
            f"app.{table}: read {rows.num_rows} rows but accepted {accepted.num_rows} + quarantined "
            f"{quarantined.num_rows}"
        )
    return split


def concat_splits(splits: list[Split], schema: pa.Schema) -> Split:
    """One Split of consecutive parts (e.g. primary-key slices read at once), in their order; `schema`: of
    the accepted rows when there are no parts."""
    if not splits:
        empty = schema.empty_table()
        return Split(empty, empty.append_column(REASON_COLUMN, pa.array([], pa.string())), {})
    reasons: Counter[str] = Counter()
    for split in splits:
        reasons.update(split.reasons)
    return Split(pa.concat_tables([s.accepted for s in splits]), pa.concat_tables([s.quarantined for s in splits]),
                 dict(sorted(reasons.items())))
