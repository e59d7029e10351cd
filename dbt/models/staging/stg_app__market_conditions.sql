with

source as (
    select * from {{ source('app', 'market_conditions') }}
),

renamed as (
    select
        day::date as market_day,
        regime::text as market_regime,
        interest_rate::double precision as interest_rate,
        inflation_rate::double precision as inflation_rate,
        index_level::double precision as index_level,
        updated_at::timestamptz as updated_at
    from source
)

select * from renamed
