-- Every cent of app.transactions lands in fct_daily_user_financials: per user, the sum of net_flow
-- equals the sum of the signed amounts. Returns the users where it does not. Hourly builds (var
-- recent_rows_only) check the user-days of the transactions changed within the late-row lookback, through
-- the indexes of fct_transactions (whose rows equal the source's: assert_incremental_marts_match_their_sources).

{% if var('recent_rows_only', false) %}

with

-- the user-days of the changed transactions (read through the updated_at index); few, so materialised
changed_days as (
    select distinct
        user_id,
        date_day
    from {{ ref('fct_transactions') }}
    where updated_at >= {{ incremental_cutoff('updated_at', ref('fct_transactions')) }}
),

first_changed_day as (
    select min(date_day) as date_day from changed_days
),

-- the day bound lets both marts be read through their date_day indexes
transaction_totals as (
    select
        transactions.user_id,
        transactions.date_day,
        sum(transactions.amount) as total_amount
    from {{ ref('fct_transactions') }} as transactions
    inner join changed_days
        on transactions.user_id = changed_days.user_id
        and transactions.date_day = changed_days.date_day
    where transactions.date_day >= (select date_day from first_changed_day)
    group by
        transactions.user_id,
        transactions.date_day
),

final as (
    select
        transaction_totals.user_id,
        transaction_totals.total_amount,
        daily.net_flow as total_net_flow
    from transaction_totals
    left join {{ ref('fct_daily_user_financials') }} as daily
        on transaction_totals.user_id = daily.user_id
        and transaction_totals.date_day = daily.date_day
        and daily.date_day >= (select date_day from first_changed_day)
    where transaction_totals.total_amount <> coalesce(daily.net_flow, 0)
)

{% else %}

with

transactions as (
    select * from {{ ref('stg_app__transactions') }}
),

daily as (
    select * from {{ ref('fct_daily_user_financials') }}
),

transaction_totals as (
    select
        user_id,
        sum(amount) as total_amount
    from transactions
    group by user_id
),

daily_totals as (
    select
        user_id,
        sum(net_flow) as total_net_flow
    from daily
    group by user_id
),

final as (
    select
        transaction_totals.user_id,
        transaction_totals.total_amount,
        daily_totals.total_net_flow
    from transaction_totals
    full outer join daily_totals
        on transaction_totals.user_id = daily_totals.user_id
    where coalesce(transaction_totals.total_amount, 0) <> coalesce(daily_totals.total_net_flow, 0)
)

{% endif %}

select * from final
