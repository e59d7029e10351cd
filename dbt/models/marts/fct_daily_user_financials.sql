-- depends_on: {{ ref('fct_transactions') }}
{# post_hook analyze: fresh statistics, so the next run plans its recent-rows filters as index scans #}
{{
    config(
        materialized='incremental',
        unique_key='user_day_key',
        incremental_strategy='delete+insert',
        post_hook='analyze {{ this }}',
        indexes=[
            {'columns': ['user_day_key'], 'unique': True},
            {'columns': ['user_id', 'date_day'], 'unique': True},
            {'columns': ['date_day']},
            {'columns': ['updated_at']},
        ],
    )
}}

with

daily_flows as (
    select * from {{ ref('int_transactions__daily_flows') }}
),

current_balances as (
    select * from {{ ref('int_accounts__current_balances') }}
),

{% if is_incremental() %}

-- The users whose transactions changed since the newest change this table holds (minus the lookback for
-- late commits), and the first day each changed (fct_transactions' updated_at index): an hour of new
-- purchases rewrites the buyers' last day, not every user's last days.
changed_users as (
    select
        user_id,
        min(date_day) as first_changed_day
    from {{ ref('fct_transactions') }}
    where updated_at >= {{ incremental_cutoff('updated_at') }}
    group by user_id
),

-- Two index probes per changed user (the unique user_id, date_day index), not a scan of the mart.
previous_spans as (
    select
        changed_users.user_id,
        spans.previous_first_day,
        spans.previous_last_day
    from changed_users
    cross join lateral (
        select
            min(loaded.date_day) as previous_first_day,
            max(loaded.date_day) as previous_last_day
        from {{ this }} as loaded
        where loaded.user_id = changed_users.user_id
    ) as spans
    where spans.previous_last_day is not null
),

-- First day rebuilt per changed user: the first changed day (every later balance moves with it), or the
-- day after their previous last day when that is earlier (the quiet days in between get their rows).
user_starts as (
    select
        changed_users.user_id,
        case
            when previous_spans.user_id is null then changed_users.first_changed_day
            else least(changed_users.first_changed_day, previous_spans.previous_last_day + 1)
        end as start_day
    from changed_users
    left join previous_spans
        on changed_users.user_id = previous_spans.user_id
),

-- Each changed user's transactions from their start day on, one index probe (user_id, date_day) per user:
-- offset 0 keeps the lateral a per-user probe (flattened, Postgres plans a join with the whole table).
scoped_transactions as materialized (
    select user_transactions.*
    from user_starts
    cross join lateral (
        select *
        from {{ ref('fct_transactions') }} as transactions
        where transactions.user_id = user_starts.user_id
            and transactions.date_day >= user_starts.start_day
        offset 0
    ) as user_transactions
),

scoped_flows as (
    {{ daily_flows('scoped_transactions') }}
),

user_spans as (
    select
        user_starts.user_id,
        user_starts.start_day as first_date_day,
        max(scoped_flows.date_day) as last_date_day,
        -- the running updated_at carried in from the day before the rebuilt ones (kept as it was)
        (
            select kept.updated_at
            from {{ this }} as kept
            where kept.user_id = user_starts.user_id
                and kept.date_day = user_starts.start_day - 1
        ) as updated_at_before
    from user_starts
    inner join scoped_flows
        on user_starts.user_id = scoped_flows.user_id
    group by
        user_starts.user_id,
        user_starts.start_day
),

{% else %}

scoped_flows as (
    select * from daily_flows
),

user_spans as (
    select
        user_id,
        min(date_day) as first_date_day,
        max(date_day) as last_date_day,
        null::timestamptz as updated_at_before
    from daily_flows
    group by user_id
),

{% endif %}

-- Every calendar day from the user's first to last transaction day: quiet days are real zeros.
user_days as (
    select
        user_spans.user_id,
        spine.date_day::date as date_day,
        user_spans.updated_at_before
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
        coalesce(scoped_flows.transactions_count, 0) as transactions_count,
        coalesce(scoped_flows.income, 0) as income,
        coalesce(scoped_flows.spend_essential, 0) as spend_essential,
        coalesce(scoped_flows.spend_discretionary, 0) as spend_discretionary,
        coalesce(scoped_flows.spend_total, 0) as spend_total,
        coalesce(scoped_flows.spend_dining, 0) as spend_dining,
        coalesce(scoped_flows.spend_shopping, 0) as spend_shopping,
        coalesce(scoped_flows.impulse_spend, 0) as impulse_spend,
        coalesce(scoped_flows.savings_transfers, 0) as savings_transfers,
        coalesce(scoped_flows.debt_payments, 0) as debt_payments,
        coalesce(scoped_flows.net_flow, 0) as net_flow,
        coalesce(scoped_flows.checking_flow, 0) as checking_flow,
        coalesce(scoped_flows.savings_flow, 0) as savings_flow,
        scoped_flows.updated_at as flows_updated_at,
        user_days.updated_at_before
    from user_days
    left join scoped_flows
        on user_days.user_id = scoped_flows.user_id
        and user_days.date_day = scoped_flows.date_day
),

-- End-of-day balance = current balance minus every flow after that day: it needs only the days from
-- the one rebuilt onwards, so an incremental run gives the same numbers as a full one.
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
        coalesce(current_balances.checking_current_balance, 0)
            - coalesce(sum(filled.checking_flow) over user_after_day, 0) as checking_balance_eod,
        coalesce(current_balances.savings_current_balance, 0)
            - coalesce(sum(filled.savings_flow) over user_after_day, 0) as savings_balance_eod,
        greatest(filled.updated_at_before, max(filled.flows_updated_at) over user_to_day) as updated_at
    from filled
    left join current_balances
        on filled.user_id = current_balances.user_id
    window user_after_day as (
        partition by filled.user_id
        order by filled.date_day
        rows between 1 following and unbounded following
    ),
    user_to_day as (
        partition by filled.user_id
        order by filled.date_day
        rows between unbounded preceding and current row
    )
)

select * from final
