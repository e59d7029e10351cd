with

sessions as (
    select * from {{ ref('fct_sessions') }}
),

events as (
    select * from {{ ref('stg_app__user_events') }}
),

daily_sessions as (
    select
        user_id,
        session_date as activity_date,
        count(*) as sessions_count,
        coalesce(sum(duration_seconds), 0) as total_session_seconds,
        avg(duration_seconds) as avg_session_seconds,
        sum(actions_count) as session_actions_count
    from sessions
    group by user_id, session_date
),

event_features as (
    select
        user_id,
        (event_at at time zone 'UTC')::date as activity_date,
        event_type,
        case
            when event_data ->> 'page' is not null then 'page:' || (event_data ->> 'page')
            else 'event:' || event_type
        end as feature
    from events
),

daily_events as (
    select
        user_id,
        activity_date,
        count(*) as events_count,
        count(distinct feature) as features_used,
        count(*) filter (where event_type = 'nudge_view') as nudges_viewed
    from event_features
    group by user_id, activity_date
),

final as (
    select
        coalesce(daily_sessions.user_id, daily_events.user_id) as user_id,
        coalesce(daily_sessions.activity_date, daily_events.activity_date) as activity_date,
        coalesce(daily_sessions.sessions_count, 0) as sessions_count,
        coalesce(daily_sessions.total_session_seconds, 0) as total_session_seconds,
        daily_sessions.avg_session_seconds,
        coalesce(daily_sessions.session_actions_count, 0) as session_actions_count,
        coalesce(daily_events.events_count, 0) as events_count,
        coalesce(daily_events.features_used, 0) as features_used,
        coalesce(daily_events.nudges_viewed, 0) as nudges_viewed
    from daily_sessions
    full outer join daily_events
        on daily_sessions.user_id = daily_events.user_id
        and daily_sessions.activity_date = daily_events.activity_date
)

select * from final
