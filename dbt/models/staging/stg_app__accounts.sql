with

source as (
    select * from {{ source('app', 'accounts') }}
),

renamed as (
    select
        account_id::bigint as account_id,
        user_id::bigint as user_id,
        account_type::text as account_type,
        opened_at::timestamptz as opened_at,
        current_balance::numeric(14, 2) as current_balance,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
