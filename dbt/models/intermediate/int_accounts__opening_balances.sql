with

accounts as (
    select * from {{ ref('stg_app__accounts') }}
),

transactions as (
    select * from {{ ref('stg_app__transactions') }}
),

account_flows as (
    select
        account_id,
        sum(amount) as lifetime_flow
    from transactions
    group by account_id
),

account_openings as (
    select
        accounts.user_id,
        accounts.account_type,
        accounts.current_balance - coalesce(account_flows.lifetime_flow, 0) as opening_balance
    from accounts
    left join account_flows
        on accounts.account_id = account_flows.account_id
),

final as (
    select
        user_id,
        sum(case when account_type = 'checking' then opening_balance else 0 end) as checking_opening_balance,
        sum(case when account_type = 'savings' then opening_balance else 0 end) as savings_opening_balance
    from account_openings
    group by user_id
)

select * from final
