{# post_hook analyze: fresh statistics, so the next run plans its recent-rows filters as index scans #}
{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'activity_date'],
        incremental_strategy='delete+insert',
        post_hook='analyze {{ this }}',
        indexes=[
            {'columns': ['user_id', 'activity_date'], 'unique': True},
            {'columns': ['activity_date']},
            {'columns': ['updated_at']},
        ],
    )
}}

with

-- Not materialised in an incremental run (each is read more than once): every read keeps its own
-- filters and uses the indexes of its table, instead of one copy of the whole table.
sessions as {% if is_incremental() %}not materialized {% endif %}(
    select * from {{ ref('fct_sessions') }}
),

events as {% if is_incremental() %}not materialized {% endif %}(
    select * from {{ ref('stg_app__user_events') }}
),

{% if is_incremental() %}

-- User-days with a session or an event changed within the lookback of the newest change loaded.
changed_days as (
    select
        user_id,
        session_date as activity_date
    from sessions
    where updated_at >= {{ incremental_cutoff('updated_at') }}
    union
    select
        user_id,
        (event_at at time zone 'UTC')::date as activity_date
    from events
    where updated_at >= {{ incremental_cutoff('updated_at') }}
),

-- Each changed user-day's sessions and events, one probe per user-day through the (user_id, day) indexes
-- of fct_sessions and app.user_events; offset 0 keeps each lateral a probe (flattened, Postgres plans
-- a join with every event since the first changed day).
scoped_sessions as (
    select day_sessions.*
    from changed_days
    cross join lateral (
        select *
        from sessions
        where sessions.user_id = changed_days.user_id
            and sessions.session_date = changed_days.activity_date
        offset 0
    ) as day_sessions
),

scoped_events as (
    select day_events.*
    from changed_days
    cross join lateral (
        select *
        from events
        where events.user_id = changed_days.user_id
            and events.event_at >= changed_days.activity_date::timestamp at time zone 'UTC'
            and events.event_at < (changed_days.activity_date + 1)::timestamp at time zone 'UTC'
        offset 0
    ) as day_events
),

{% else %}

scoped_sessions as (
    select * from sessions
),

scoped_events as (
    select * from events
),

{% endif %}

daily_sessions as (
    select
        user_id,
        session_date as activity_date,
        count(*) as sessions_count,
        coalesce(sum(duration_seconds), 0) as total_session_seconds,
        avg(duration_seconds) as avg_session_seconds,
        sum(actions_count) as session_actions_count,
        max(updated_at) as updated_at
    from scoped_sessions
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
        end as feature,
        updated_at
    from scoped_events
),

daily_events as (
    select
        user_id,
        activity_date,
        count(*) as events_count,
        count(distinct feature) as features_used,
        count(*) filter (where event_type = 'nudge_view') as nudges_viewed,
        max(updated_at) as updated_at
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
        coalesce(daily_events.nudges_viewed, 0) as nudges_viewed,
        greatest(daily_sessions.updated_at, daily_events.updated_at) as updated_at
    from daily_sessions
    full outer join daily_events
        on daily_sessions.user_id = daily_events.user_id
        and daily_sessions.activity_date = daily_events.activity_date
)

select * from final
