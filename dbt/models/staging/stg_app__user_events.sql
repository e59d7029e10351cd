with

source as (
    select * from {{ source('app', 'user_events') }}
),

renamed as (
    select
        id::bigint as event_id,
        user_id::bigint as user_id,
        event_type::text as event_type,
        event_data::jsonb as event_data,
        "timestamp"::timestamptz as event_at,
        session_id::text as session_id,
        context::jsonb as event_context,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
