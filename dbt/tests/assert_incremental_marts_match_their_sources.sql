-- The incremental marts hold exactly the rows of their sources: a row deleted or rewritten in the app
-- beyond the late-row lookback shows up here (pipelines.analytics_build then rebuilds them whole).
-- Returns the keys present on one side only.

with

source_transactions as (
    select transaction_id from {{ ref('stg_app__transactions') }}
),

mart_transactions as (
    select transaction_id from {{ ref('fct_transactions') }}
),

source_interactions as (
    select interaction_id from {{ ref('stg_app__coaching_interactions') }}
),

mart_interactions as (
    select interaction_id from {{ ref('fct_coaching_outcomes') }}
),

final as (
    (select 'fct_transactions' as mart, transaction_id as id from mart_transactions
     except select 'fct_transactions', transaction_id from source_transactions)
    union all
    (select 'fct_transactions', transaction_id from source_transactions
     except select 'fct_transactions', transaction_id from mart_transactions)
    union all
    (select 'fct_coaching_outcomes', interaction_id from mart_interactions
     except select 'fct_coaching_outcomes', interaction_id from source_interactions)
    union all
    (select 'fct_coaching_outcomes', interaction_id from source_interactions
     except select 'fct_coaching_outcomes', interaction_id from mart_interactions)
)

select * from final
