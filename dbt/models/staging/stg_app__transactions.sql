with

source as (
    select * from {{ source('app', 'transactions') }}
),

renamed as (
    select
        transaction_id::bigint as transaction_id,
        user_id::bigint as user_id,
        account_id::bigint as account_id,
        amount::numeric(12, 2) as amount,
        category::text as category,
        merchant::text as merchant,
        is_impulse::boolean as is_impulse,
        occurred_at::timestamptz as occurred_at,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
