{# post_hook analyze: fresh statistics, so the next run plans its recent-rows filters as index scans #}
{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='delete+insert',
        post_hook='analyze {{ this }}',
        indexes=[
            {'columns': ['session_id'], 'unique': True},
            {'columns': ['user_id', 'session_date']},
            {'columns': ['updated_at']},
        ],
    )
}}

with

-- Not materialised in an incremental run (each is read more than once): every read keeps its own
-- filters and uses the indexes of its table, instead of one copy of the whole table.
sessions as {% if is_incremental() %}not materialized {% endif %}(
    select * from {{ ref('stg_app__user_sessions') }}
),

events as {% if is_incremental() %}not materialized {% endif %}(
    select * from {{ ref('stg_app__user_events') }}
),

{% if is_incremental() %}

-- Sessions whose row or one of whose events changed within the lookback of the newest change loaded.
changed_events as (
    select
        user_id,
        session_id
    from events
    where session_id is not null
        and updated_at >= {{ incremental_cutoff('updated_at') }}
),

changed_sessions as (
    select
        user_id,
        session_id
    from sessions
    where updated_at >= {{ incremental_cutoff('updated_at') }}
    union
    select
        user_id,
        session_id
    from changed_events
),

-- The changed sessions and all their events, one probe per session through the session_id indexes of
-- app.user_sessions and app.user_events (migration 0007); offset 0 keeps each lateral a probe (flattened,
-- Postgres plans a join with the whole table through the staging view).
changed_session_ids as (
    select distinct session_id from changed_sessions
),

scoped_sessions as (
    select session_rows.*
    from changed_session_ids
    cross join lateral (
        select * from sessions where sessions.session_id = changed_session_ids.session_id offset 0
    ) as session_rows
),

scoped_events as (
    select session_event_rows.*
    from changed_session_ids
    cross join lateral (
        select * from events where events.session_id = changed_session_ids.session_id offset 0
    ) as session_event_rows
),

{% else %}

scoped_sessions as (
    select * from sessions
),

scoped_events as (
    select * from events
    where session_id is not null
),

{% endif %}

session_events as (
    select
        session_id,
        count(*) as events_count,
        count(distinct event_type) as event_types_count,
        max(updated_at) as last_event_updated_at
    from scoped_events
    group by session_id
),

final as (
    select
        scoped_sessions.session_id,
        scoped_sessions.user_id,
        scoped_sessions.started_at,
        scoped_sessions.ended_at,
        (scoped_sessions.started_at at time zone 'UTC')::date as session_date,
        scoped_sessions.ended_at is null as is_open,
        extract(epoch from scoped_sessions.ended_at - scoped_sessions.started_at)::double precision as duration_seconds,
        scoped_sessions.actions_count,
        jsonb_array_length(scoped_sessions.pages_visited) as pages_visited_count,
        scoped_sessions.pages_visited,
        coalesce(session_events.events_count, 0) as events_count,
        coalesce(session_events.event_types_count, 0) as event_types_count,
        greatest(scoped_sessions.updated_at, session_events.last_event_updated_at) as updated_at
    from scoped_sessions
    left join session_events
        on scoped_sessions.session_id = session_events.session_id
)

select * from final
