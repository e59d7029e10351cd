with

accounts as (
    select * from {{ ref('stg_app__accounts') }}
),

final as (
    select
        user_id,
        sum(case when account_type = 'checking' then current_balance else 0 end) as checking_current_balance,
        sum(case when account_type = 'savings' then current_balance else 0 end) as savings_current_balance
    from accounts
    group by user_id
)

select * from final
