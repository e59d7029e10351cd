with

source as (
    select * from {{ source('app', 'user_sessions') }}
),

renamed as (
    select
        id::bigint as user_session_id,
        user_id::bigint as user_id,
        session_id::text as session_id,
        start_time::timestamptz as started_at,
        end_time::timestamptz as ended_at,
        actions_count::integer as actions_count,
        pages_visited::jsonb as pages_visited,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
