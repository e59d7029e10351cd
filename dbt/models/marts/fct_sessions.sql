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

sessions as (
    select * from {{ ref('stg_app__user_sessions') }}
),

events as (
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
        and updated_at >= {{ incremental_cutoff('updated_at', 'timestamp') }}
),

changed_sessions as (
    select
        user_id,
        session_id
    from sessions
    where updated_at >= {{ incremental_cutoff('updated_at', 'timestamp') }}
    union
    select
        user_id,
        session_id
    from changed_events
),

scoped_sessions as (
    select sessions.*
    from sessions
    where sessions.session_id in (select session_id from changed_sessions)
),

-- all events of those sessions, through app.user_events' session_id index (migration 0007)
scoped_events as (
    select events.*
    from events
    where events.session_id in (select session_id from changed_sessions)
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
