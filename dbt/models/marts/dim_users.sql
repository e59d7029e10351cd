with

users as (
    select * from {{ ref('stg_app__users') }}
),

accounts as (
    select * from {{ ref('stg_app__accounts') }}
),

debts as (
    select * from {{ ref('stg_app__debts') }}
),

goals as (
    select * from {{ ref('stg_app__goals') }}
),

user_accounts as (
    select
        user_id,
        count(*) as accounts_count,
        sum(case when account_type = 'checking' then current_balance else 0 end) as checking_balance,
        sum(case when account_type = 'savings' then current_balance else 0 end) as savings_balance,
        sum(case when account_type = 'credit_card' then current_balance else 0 end) as credit_card_balance
    from accounts
    group by user_id
),

user_debts as (
    select
        user_id,
        count(*) filter (where balance > 0) as open_debts_count,
        sum(balance) as debt_total,
        max(apr) filter (where balance > 0) as max_debt_apr
    from debts
    group by user_id
),

user_goals as (
    select
        user_id,
        count(*) filter (where goal_status = 'active') as active_goals_count
    from goals
    group by user_id
),

user_activity as (
    -- two probes of fct_transactions' (user_id, date_day) index per user, not a scan of every transaction:
    -- this table is rebuilt every hour, so it must cost what the users cost, not what their history does
    select
        users.user_id,
        (select min(t.date_day) from {{ ref('fct_transactions') }} as t where t.user_id = users.user_id)
            as first_transaction_date,
        (select max(t.date_day) from {{ ref('fct_transactions') }} as t where t.user_id = users.user_id)
            as last_transaction_date
    from users
),

profiles as (
    select
        *,
        {{ age_band('birth_year') }} as age_band,
        {{ user_segment('income_band', 'birth_year') }} as user_segment
    from users
),

final as (
    select
        users.user_id,
        users.created_at,
        users.birth_year,
        users.income_band,
        users.pay_frequency,
        users.declared_monthly_income,
        users.region,
        users.device_type,
        users.risk_tolerance,
        users.is_tracking_opt_out,
        users.age_band,
        users.user_segment,
        coalesce(user_accounts.accounts_count, 0) as accounts_count,
        coalesce(user_accounts.checking_balance, 0) as checking_balance,
        coalesce(user_accounts.savings_balance, 0) as savings_balance,
        coalesce(user_accounts.credit_card_balance, 0) as credit_card_balance,
        coalesce(user_debts.open_debts_count, 0) as open_debts_count,
        coalesce(user_debts.debt_total, 0) as debt_total,
        coalesce(user_debts.max_debt_apr, 0) as max_debt_apr,
        coalesce(user_goals.active_goals_count, 0) as active_goals_count,
        user_activity.first_transaction_date,
        user_activity.last_transaction_date
    from profiles as users
    left join user_accounts
        on users.user_id = user_accounts.user_id
    left join user_debts
        on users.user_id = user_debts.user_id
    left join user_goals
        on users.user_id = user_goals.user_id
    left join user_activity
        on users.user_id = user_activity.user_id
)

select * from final
