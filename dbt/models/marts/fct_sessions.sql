with

sessions as (
    select * from {{ ref('stg_app__user_sessions') }}
),

events as (
    select * from {{ ref('stg_app__user_events') }}
),

session_events as (
    select
        session_id,
        count(*) as events_count,
        count(distinct event_type) as event_types_count
    from events
    where session_id is not null
    group by session_id
),

final as (
    select
        sessions.session_id,
        sessions.user_id,
        sessions.started_at,
        sessions.ended_at,
        (sessions.started_at at time zone 'UTC')::date as session_date,
        sessions.ended_at is null as is_open,
        extract(epoch from sessions.ended_at - sessions.started_at)::double precision as duration_seconds,
        sessions.actions_count,
        jsonb_array_length(sessions.pages_visited) as pages_visited_count,
        sessions.pages_visited,
        coalesce(session_events.events_count, 0) as events_count,
        coalesce(session_events.event_types_count, 0) as event_types_count
    from sessions
    left join session_events
        on sessions.session_id = session_events.session_id
)

select * from final
