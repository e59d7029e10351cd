-- Every cent of app.transactions lands in fct_daily_user_financials: per user, the sum of net_flow
-- equals the sum of the signed amounts. Returns the users where it does not.

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

select * from final
