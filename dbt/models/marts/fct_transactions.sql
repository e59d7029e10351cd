{# post_hook analyze: fresh statistics, so the next run plans its recent-rows filters as index scans;
   prune_deleted_rows: the tombstones of rows no longer in the mart are not needed any more #}
{{
    config(
        materialized='incremental',
        unique_key='transaction_id',
        incremental_strategy='delete+insert',
        post_hook=['analyze {{ this }}', "{{ prune_deleted_rows('app.transactions', 'transaction_id') }}"],
        indexes=[
            {'columns': ['transaction_id'], 'unique': True},
            {'columns': ['user_id', 'date_day']},
            {'columns': ['date_day']},
            {'columns': ['updated_at']},
        ],
    )
}}

with

transactions as (
    select * from {{ ref('stg_app__transactions') }}
    {% if is_incremental() %}
    where updated_at >= {{ incremental_cutoff('updated_at') }}
    {% endif %}
),

accounts as (
    select * from {{ ref('stg_app__accounts') }}
),

final as (
    select
        transactions.transaction_id,
        transactions.user_id,
        transactions.account_id,
        accounts.account_type,
        transactions.amount,
        transactions.category,
        case
            when transactions.category in ({{ sql_values(var('essential_categories')) }}) then 'essential'
            when transactions.category in ({{ sql_values(var('discretionary_categories')) }}) then 'discretionary'
            else transactions.category
        end as category_group,
        transactions.merchant,
        transactions.is_impulse,
        transactions.occurred_at,
        (transactions.occurred_at at time zone 'UTC')::date as date_day,
        transactions.updated_at
    from transactions
    left join accounts
        on transactions.account_id = accounts.account_id
)

select * from final
