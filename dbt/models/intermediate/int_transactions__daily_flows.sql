with

transactions as (
    select * from {{ ref('fct_transactions') }}
),

daily_flows as (
    {{ daily_flows('transactions') }}
)

select * from daily_flows
