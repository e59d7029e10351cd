with

source as (
    select * from {{ source('app', 'debts') }}
),

renamed as (
    select
        debt_id::bigint as debt_id,
        user_id::bigint as user_id,
        debt_type::text as debt_type,
        balance::numeric(12, 2) as balance,
        apr::numeric(6, 4) as apr,
        min_payment::numeric(12, 2) as min_payment,
        created_at::timestamptz as created_at,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
