-- The incremental marts hold exactly the rows of their sources: a row deleted or rewritten in the app
-- beyond the late-row lookback shows up here (pipelines.analytics_build then rebuilds them whole).
-- Returns the keys present on one side only. Hourly builds (var recent_rows_only) compare the keys of the
-- rows changed within the lookback (through the updated_at indexes; the newest one read from the
-- app table, whose index a view's max() cannot use) and the row counts: an old row is
-- only ever deleted (a rewrite moves its updated_at into the lookback), which changes the count.

{% set recent = var('recent_rows_only', false) %}

with

source_transactions as (
    select transaction_id as id from {{ ref('stg_app__transactions') }}
    {%- if recent %}
    where updated_at >= {{ incremental_cutoff('updated_at', 'timestamp', source('app', 'transactions')) }}
    {%- endif %}
),

mart_transactions as (
    select transaction_id as id from {{ ref('fct_transactions') }}
    {%- if recent %}
    where updated_at >= {{ incremental_cutoff('updated_at', 'timestamp', source('app', 'transactions')) }}
    {%- endif %}
),

source_interactions as (
    select interaction_id as id from {{ ref('stg_app__coaching_interactions') }}
    {%- if recent %}
    where updated_at >= {{ incremental_cutoff('updated_at', 'timestamp', source('app', 'coaching_interactions')) }}
    {%- endif %}
),

mart_interactions as (
    select interaction_id as id from {{ ref('fct_coaching_outcomes') }}
    {%- if recent %}
    where updated_at >= {{ incremental_cutoff('updated_at', 'timestamp', source('app', 'coaching_interactions')) }}
    {%- endif %}
),

final as (
    (select 'fct_transactions' as mart, id from mart_transactions
     except select 'fct_transactions', id from source_transactions)
    union all
    (select 'fct_transactions', id from source_transactions
     except select 'fct_transactions', id from mart_transactions)
    union all
    (select 'fct_coaching_outcomes', id from mart_interactions
     except select 'fct_coaching_outcomes', id from source_interactions)
    union all
    (select 'fct_coaching_outcomes', id from source_interactions
     except select 'fct_coaching_outcomes', id from mart_interactions)
    {%- if recent %}
    union all
    select 'fct_transactions: row count', null
    where (select count(*) from {{ ref('fct_transactions') }})
        <> (select count(*) from {{ ref('stg_app__transactions') }})
    union all
    select 'fct_coaching_outcomes: row count', null
    where (select count(*) from {{ ref('fct_coaching_outcomes') }})
        <> (select count(*) from {{ ref('stg_app__coaching_interactions') }})
    {%- endif %}
)

select * from final
