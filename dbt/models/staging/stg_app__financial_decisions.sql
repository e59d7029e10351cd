with

source as (
    select * from {{ source('app', 'financial_decisions') }}
),

renamed as (
    select
        id::bigint as decision_id,
        user_id::bigint as user_id,
        decision_type::text as decision_type,
        amount::numeric(12, 2) as amount,
        category::text as category,
        context::jsonb as decision_context,
        outcome::text as outcome,
        "timestamp"::timestamptz as decided_at,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
