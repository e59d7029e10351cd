with

source as (
    select * from {{ source('app', 'users') }}
),

renamed as (
    select
        user_id::bigint as user_id,
        created_at::timestamptz as created_at,
        birth_year::integer as birth_year,
        income_band::text as income_band,
        pay_frequency::text as pay_frequency,
        monthly_income::numeric(12, 2) as declared_monthly_income,
        region::text as region,
        device_type::text as device_type,
        risk_tolerance::text as risk_tolerance,
        tracking_opt_out::boolean as is_tracking_opt_out,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
