-- depends_on: {{ source('ops', 'deleted_rows') }}
{# pre_hook: the rows of users deleted from app.users leave the table (delete+insert cannot drop a key);
   post_hook analyze: fresh statistics, so the next run plans its recent-rows filters as index scans;
   prune_user_tombstones: the user tombstones no later run reads (macros/user_tombstones.sql) #}
{{
    config(
        materialized='incremental',
        unique_key='user_id',
        incremental_strategy='delete+insert',
        pre_hook="{{ delete_users_gone_from_app() }}",
        post_hook=['analyze {{ this }}', "{{ prune_user_tombstones() }}"],
        indexes=[
            {'columns': ['user_id'], 'unique': True},
            {'columns': ['updated_at']},
        ],
    )
}}

with

-- Not materialised in an incremental run (each is read more than once): every read keeps its own
-- filters and uses the indexes of its table, instead of one copy of the whole table.
users as {% if is_incremental() %}not materialized {% endif %}(
    select * from {{ ref('stg_app__users') }}
),

accounts as {% if is_incremental() %}not materialized {% endif %}(
    select * from {{ ref('stg_app__accounts') }}
),

debts as {% if is_incremental() %}not materialized {% endif %}(
    select * from {{ ref('stg_app__debts') }}
),

goals as {% if is_incremental() %}not materialized {% endif %}(
    select * from {{ ref('stg_app__goals') }}
),

{% if is_incremental() %}

{%- set cutoff = incremental_cutoff('updated_at') %}

-- Transactions changed since the newest change this table holds (minus the lookback for late commits),
-- per user, through fct_transactions' updated_at index.
changed_transactions as (
    select
        user_id,
        max(updated_at) as updated_at
    from {{ ref('fct_transactions') }}
    where updated_at >= {{ cutoff }}
    group by user_id
),

-- The users whose row can have changed since the cutoff, each set found through an index: a change to
-- their profile, accounts (balances move with every transaction), debts, goals or transactions; a deleted
-- account, debt or goal (its tombstone names the user, migration 0008); and the rows whose age band the
-- calendar moved: age_band follows current_date, so a new year changes it with no input changed (a scan of
-- this table, small next to rebuilding it).
changed_users as (
    select user_id
    from users
    where updated_at >= {{ cutoff }}
    union
    select user_id
    from accounts
    where updated_at >= {{ cutoff }}
    union
    select user_id
    from debts
    where updated_at >= {{ cutoff }}
    union
    select user_id
    from goals
    where updated_at >= {{ cutoff }}
    union
    select user_id
    from changed_transactions
    union
    select row_id
    from {{ source('ops', 'deleted_rows') }}
    where table_name in ({{ sql_values(user_tombstone_tables()) }})
        and deleted_at >= {{ cutoff }}
    union
    select user_id
    from {{ this }}
    where age_band <> {{ age_band('birth_year') }}
),

-- The changed users' rows, one index probe per user and table (app.users' primary key, the user_id
-- indexes of migration 0008): offset 0 keeps each lateral a probe (flattened, Postgres plans a join with
-- the whole table). A user deleted from app.users has none (the pre-hook dropped their row).
scoped_users as (
    select user_rows.*
    from changed_users
    cross join lateral (
        select * from users where users.user_id = changed_users.user_id offset 0
    ) as user_rows
),

scoped_accounts as (
    select account_rows.*
    from changed_users
    cross join lateral (
        select * from accounts where accounts.user_id = changed_users.user_id offset 0
    ) as account_rows
),

scoped_debts as (
    select debt_rows.*
    from changed_users
    cross join lateral (
        select * from debts where debts.user_id = changed_users.user_id offset 0
    ) as debt_rows
),

scoped_goals as (
    select goal_rows.*
    from changed_users
    cross join lateral (
        select * from goals where goals.user_id = changed_users.user_id offset 0
    ) as goal_rows
),

-- First and last day: two probes of fct_transactions' (user_id, date_day) index per changed user, not a
-- read of their history. The newest updated_at of a user's transactions only grows (updated_at moves
-- forward with every change; a deleted transaction fails the drift test, which rebuilds every mart whole):
-- the one loaded, or that of a transaction changed since the cutoff.
user_transactions as (
    select
        scoped_users.user_id,
        (
            select min(t.date_day) from {{ ref('fct_transactions') }} as t where t.user_id = scoped_users.user_id
        ) as first_transaction_date,
        (
            select max(t.date_day) from {{ ref('fct_transactions') }} as t where t.user_id = scoped_users.user_id
        ) as last_transaction_date,
        greatest(
            (
                select loaded.transactions_updated_at
                from {{ this }} as loaded
                where loaded.user_id = scoped_users.user_id
            ),
            changed_transactions.updated_at
        ) as transactions_updated_at
    from scoped_users
    left join changed_transactions
        on scoped_users.user_id = changed_transactions.user_id
),

{% else %}

scoped_users as (
    select * from users
),

scoped_accounts as (
    select * from accounts
),

scoped_debts as (
    select * from debts
),

scoped_goals as (
    select * from goals
),

user_transactions as (
    select
        user_id,
        min(date_day) as first_transaction_date,
        max(date_day) as last_transaction_date,
        max(updated_at) as transactions_updated_at
    from {{ ref('fct_transactions') }}
    group by user_id
),

{% endif %}

user_accounts as (
    select
        user_id,
        count(*) as accounts_count,
        sum(case when account_type = 'checking' then current_balance else 0 end) as checking_balance,
        sum(case when account_type = 'savings' then current_balance else 0 end) as savings_balance,
        sum(case when account_type = 'credit_card' then current_balance else 0 end) as credit_card_balance,
        max(updated_at) as updated_at
    from scoped_accounts
    group by user_id
),

user_debts as (
    select
        user_id,
        count(*) filter (where balance > 0) as open_debts_count,
        sum(balance) as debt_total,
        max(apr) filter (where balance > 0) as max_debt_apr,
        max(updated_at) as updated_at
    from scoped_debts
    group by user_id
),

user_goals as (
    select
        user_id,
        count(*) filter (where goal_status = 'active') as active_goals_count,
        max(updated_at) as updated_at
    from scoped_goals
    group by user_id
),

profiles as (
    select
        *,
        {{ age_band('birth_year') }} as age_band,
        {{ user_segment('income_band', 'birth_year') }} as user_segment
    from scoped_users
),

-- updated_at: the newest change of any input of the row, from the rows themselves (no build time), so a
-- full refresh and an incremental run give the same value and incremental_cutoff can read it.
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
        user_transactions.first_transaction_date,
        user_transactions.last_transaction_date,
        user_transactions.transactions_updated_at,
        greatest(
            users.updated_at,
            user_accounts.updated_at,
            user_debts.updated_at,
            user_goals.updated_at,
            user_transactions.transactions_updated_at
        ) as updated_at
    from profiles as users
    left join user_accounts
        on users.user_id = user_accounts.user_id
    left join user_debts
        on users.user_id = user_debts.user_id
    left join user_goals
        on users.user_id = user_goals.user_id
    left join user_transactions
        on users.user_id = user_transactions.user_id
)

select * from final
