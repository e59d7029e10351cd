with

daily_flows as (
    select * from {{ ref('int_transactions__daily_flows') }}
),

opening_balances as (
    select * from {{ ref('int_accounts__opening_balances') }}
),

user_spans as (
    select
        user_id,
        min(date_day) as first_date_day,
        max(date_day) as last_date_day
    from daily_flows
    group by user_id
),

-- Every calendar day from the user's first to last transaction day: quiet days are real zeros.
user_days as (
    select
        user_spans.user_id,
        spine.date_day::date as date_day
    from user_spans
    cross join lateral generate_series(
        user_spans.first_date_day,
        user_spans.last_date_day,
        interval '1 day'
    ) as spine (date_day)
),

filled as (
    select
        user_days.user_id,
        user_days.date_day,
        coalesce(daily_flows.transactions_count, 0) as transactions_count,
        coalesce(daily_flows.income, 0) as income,
        coalesce(daily_flows.spend_essential, 0) as spend_essential,
        coalesce(daily_flows.spend_discretionary, 0) as spend_discretionary,
        coalesce(daily_flows.spend_total, 0) as spend_total,
        coalesce(daily_flows.spend_dining, 0) as spend_dining,
        coalesce(daily_flows.spend_shopping, 0) as spend_shopping,
        coalesce(daily_flows.impulse_spend, 0) as impulse_spend,
        coalesce(daily_flows.savings_transfers, 0) as savings_transfers,
        coalesce(daily_flows.debt_payments, 0) as debt_payments,
        coalesce(daily_flows.net_flow, 0) as net_flow,
        coalesce(daily_flows.checking_flow, 0) as checking_flow,
        coalesce(daily_flows.savings_flow, 0) as savings_flow
    from user_days
    left join daily_flows
        on user_days.user_id = daily_flows.user_id
        and user_days.date_day = daily_flows.date_day
),

final as (
    select
        filled.user_id::text || '-' || to_char(filled.date_day, 'YYYYMMDD') as user_day_key,
        filled.user_id,
        filled.date_day,
        filled.transactions_count,
        filled.income,
        filled.spend_essential,
        filled.spend_discretionary,
        filled.spend_total,
        filled.spend_dining,
        filled.spend_shopping,
        filled.impulse_spend,
        filled.savings_transfers,
        filled.debt_payments,
        filled.net_flow,
        coalesce(opening_balances.checking_opening_balance, 0)
            + sum(filled.checking_flow) over user_to_date as checking_balance_eod,
        coalesce(opening_balances.savings_opening_balance, 0)
            + sum(filled.savings_flow) over user_to_date as savings_balance_eod
    from filled
    left join opening_balances
        on filled.user_id = opening_balances.user_id
    window user_to_date as (
        partition by filled.user_id
        order by filled.date_day
        rows between unbounded preceding and current row
    )
)

select * from final
