"""app.user_sessions built from app.user_events: start, end, action count and pages of every session.

A run for the interval ending at `high` rebuilds each session that has an event changed in the last hour
plus the extract overlap (late events), from all its events with updated_at <= high: start = the earliest
event, end = its session_end event or else its latest event, actions = events other than session_start and
session_end, pages = the distinct `event_data.page` values in order of first visit. The result is merged
into an existing row without ever shrinking it (earliest start, latest end, most actions, pages appended),
so rows the app wrote itself keep their detail, and a row is only written when it changes: a rerun for
the same interval writes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from fincoach.settings import get_settings

log = logging.getLogger(__name__)

_UPSERT = """
with touched as (
    select distinct session_id from app.user_events
    where session_id is not null and updated_at > :low and updated_at <= :high
),
events as (
    select e.user_id, e.session_id, e.event_type, e."timestamp", e.event_data ->> 'page' as page
    from app.user_events e join touched using (session_id)
    where e.updated_at <= :high
),
first_visits as (
    select session_id, page, min("timestamp") as first_at from events where page is not null group by 1, 2
),
built as (
    select
        session_id,
        min(user_id) as user_id,
        min("timestamp") as start_time,
        coalesce(max("timestamp") filter (where event_type = 'session_end'), max("timestamp")) as end_time,
        count(*) filter (where event_type not in ('session_start', 'session_end')) as actions_count,
        coalesce(
            (select jsonb_agg(f.page order by f.first_at, f.page) from first_visits f
             where f.session_id = events.session_id),
            '[]'::jsonb
        ) as pages
    from events
    group by session_id
),
merged as (
    select
        coalesce(s.user_id, b.user_id) as user_id,
        b.session_id,
        least(s.start_time, b.start_time) as start_time,
        greatest(s.end_time, b.end_time) as end_time,
        greatest(s.actions_count, b.actions_count) as actions_count,
        coalesce(s.pages_visited, '[]'::jsonb) || coalesce(
            (select jsonb_agg(p order by o) from jsonb_array_elements(b.pages) with ordinality as t(p, o)
             where not coalesce(s.pages_visited, '[]'::jsonb) @> jsonb_build_array(p)),
            '[]'::jsonb
        ) as pages_visited,
        s.session_id is null as is_new,
        s.start_time as old_start, s.end_time as old_end, s.actions_count as old_actions, s.pages_visited as old_pages
    from built b left join app.user_sessions s using (session_id)
)
insert into app.user_sessions (user_id, session_id, start_time, end_time, actions_count, pages_visited)
select user_id, session_id, start_time, end_time, actions_count, pages_visited
from merged
where is_new or (start_time, end_time, actions_count, pages_visited)
    is distinct from (old_start, old_end, old_actions, old_pages)
order by session_id
on conflict (session_id) do update set
    start_time = excluded.start_time,
    end_time = excluded.end_time,
    actions_count = excluded.actions_count,
    pages_visited = excluded.pages_visited
"""


def build_sessions(engine: sa.Engine, interval_end: datetime) -> dict:
    """Upsert the sessions touched by events of the interval ending at `interval_end`; rows written."""
    high = interval_end.astimezone(UTC)
    low = high - timedelta(hours=1 + get_settings().extract_overlap_hours)
    with engine.begin() as conn:
        written = conn.execute(sa.text(_UPSERT), {"low": low, "high": high}).rowcount
    log.info("sessions: %d written from events changed in (%s, %s]", written, low.isoformat(), high.isoformat())
    return {"sessions_written": written, "low": low.isoformat(), "high": high.isoformat()}
