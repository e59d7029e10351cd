with

source as (
    select * from {{ source('app', 'goals') }}
),

renamed as (
    select
        goal_id::bigint as goal_id,
        user_id::bigint as user_id,
        goal_type::text as goal_type,
        target_amount::numeric(12, 2) as target_amount,
        current_amount::numeric(12, 2) as current_amount,
        target_date::date as target_date,
        status::text as goal_status,
        created_at::timestamptz as created_at,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
