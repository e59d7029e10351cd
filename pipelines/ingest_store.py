"""Writes of validated events into schema app: consent and user checks, COPY into staging, insert once by event id.

One transaction per batch: the users of the batch are looked up (unknown users are rejected, opted-out
users' events are counted, never stored), the rest is COPYed into temporary staging tables and inserted
with `ON CONFLICT (client_event_id) DO NOTHING`, so a retried event is stored once. ops.ingest_counts
keeps per-day totals of what happened to every event (stored, duplicate, opted_out, rejected).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from pipelines.event_schemas import DecisionEvent, InteractionEvent

EVENT_COLUMNS = ("client_event_id", "user_id", "event_type", "event_data", '"timestamp"', "session_id", "context")
DECISION_COLUMNS = (
    "client_event_id", "user_id", "decision_type", "amount", "category", "context", "outcome", '"timestamp"',
)


@dataclass
class StoreResult:
    """What happened to the events of one batch (indices refer to the list given to `store_events`)."""

    stored: int = 0
    duplicates: int = 0
    opted_out: int = 0
    unknown_users: list[int] = field(default_factory=list)


def _event_row(e: Any) -> tuple:
    if isinstance(e, InteractionEvent):
        kind, data = e.event_type, e.event_data
    else:  # session_start / session_end
        kind, data = e.kind, {}
    return (e.event_id, e.user_id, kind, json.dumps(data), e.timestamp, e.session_id, json.dumps(e.context))


def _decision_row(e: DecisionEvent) -> tuple:
    return (e.event_id, e.user_id, e.decision_type, e.amount, e.category, json.dumps(e.context), e.outcome,
            e.timestamp)


def _copy_insert(cursor: Any, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
    """COPY `rows` into a staging copy of app.<table>, insert the new ones; rows inserted."""
    if not rows:
        return 0
    cols = ", ".join(columns)
    stage = f"ingest_{table}"
    cursor.execute(
        f"create temp table if not exists {stage} on commit delete rows as select {cols} from app.{table} with no data"
    )
    with cursor.copy(f"copy {stage} ({cols}) from stdin") as copy:
        for row in rows:
            copy.write_row(row)
    cursor.execute(
        f"insert into app.{table} ({cols}) select {cols} from {stage} on conflict (client_event_id) do nothing"
    )
    return cursor.rowcount


def record_counts(conn: sa.Connection, counts: dict[str, int]) -> None:
    """Add `counts` ({outcome: events}) to today's (UTC) totals in ops.ingest_counts."""
    items = [(k, v) for k, v in counts.items() if v]
    if not items:
        return
    conn.execute(
        sa.text(
            "insert into ops.ingest_counts (day, outcome, events) "
            "select (now() at time zone 'UTC')::date, o, n from unnest(cast(:o as text[]), cast(:n as bigint[])) "
            "as t(o, n) on conflict (day, outcome) do update set events = ops.ingest_counts.events + excluded.events, "
            "updated_at = now()"
        ),
        {"o": [k for k, _ in items], "n": [v for _, v in items]},
    )


def store_events(engine: sa.Engine, events: list[Any], rejected: int = 0) -> StoreResult:
    """Store validated events once each; `rejected` (invalid events of the batch) is only counted."""
    result = StoreResult()
    with engine.begin() as conn:
        ids = sorted({e.user_id for e in events})
        opt_out = dict(conn.execute(
            sa.text("select user_id, tracking_opt_out from app.users where user_id = any(:ids)"), {"ids": ids}
        ).all()) if ids else {}
        keep: list[Any] = []
        for i, e in enumerate(events):
            if e.user_id not in opt_out:
                result.unknown_users.append(i)
            elif opt_out[e.user_id]:
                result.opted_out += 1
            else:
                keep.append(e)
        with conn.connection.driver_connection.cursor() as cursor:
            decisions = [_decision_row(e) for e in keep if isinstance(e, DecisionEvent)]
            others = [_event_row(e) for e in keep if not isinstance(e, DecisionEvent)]
            result.stored = _copy_insert(cursor, "user_events", EVENT_COLUMNS, others) + _copy_insert(
                cursor, "financial_decisions", DECISION_COLUMNS, decisions
            )
        result.duplicates = len(keep) - result.stored
        counts = Counter(stored=result.stored, duplicate=result.duplicates, opted_out=result.opted_out,
                         rejected=rejected + len(result.unknown_users))
        record_counts(conn, dict(counts))
    return result
