-- The incremental marts hold exactly the rows of their sources: a row deleted or rewritten in the app
-- beyond the late-row lookback shows up here (pipelines.analytics_build then rebuilds them whole).
-- Returns the keys present on one side only. Hourly builds (var recent_rows_only) compare the keys of the
-- rows changed within the lookback (through the updated_at indexes; the newest one read from the
-- app table, whose index a view's max() cannot use) and return the tombstoned rows (source
-- ops.deleted_rows, written by a trigger on every delete) still in the mart and gone from the app:
-- an old row is only ever deleted (a rewrite moves its updated_at into the lookback), and a deletion
-- leaves no updated_at, so the tombstones are what finds it, through the marts' unique key indexes, at a
-- cost that follows the deletions rather than the history. A build without the var compares all keys
-- (dim_users' too).

{% set recent = var('recent_rows_only', false) %}

with

source_transactions as (
    select transaction_id as id from {{ ref('stg_app__transactions') }}
    {%- if recent %}
    where updated_at >= {{ incremental_cutoff('updated_at', source('app', 'transactions')) }}
    {%- endif %}
),

mart_transactions as (
    select transaction_id as id from {{ ref('fct_transactions') }}
    {%- if recent %}
    where updated_at >= {{ incremental_cutoff('updated_at', source('app', 'transactions')) }}
    {%- endif %}
),

source_interactions as (
    select interaction_id as id from {{ ref('stg_app__coaching_interactions') }}
    {%- if recent %}
    where updated_at >= {{ incremental_cutoff('updated_at', source('app', 'coaching_interactions')) }}
    {%- endif %}
),

mart_interactions as (
    select interaction_id as id from {{ ref('fct_coaching_outcomes') }}
    {%- if recent %}
    where updated_at >= {{ incremental_cutoff('updated_at', source('app', 'coaching_interactions')) }}
    {%- endif %}
),

{%- if not recent %}

-- dim_users, in builds without the var only: its rows move with several inputs, so there is no recent
-- slice of keys to compare; hourly, its own run drops the users tombstoned in app.users
-- (macros/user_tombstones.sql). This catches what leaves no tombstone (a TRUNCATE, a lost row).
source_users as (
    select user_id as id from {{ ref('stg_app__users') }}
),

mart_users as (
    select user_id as id from {{ ref('dim_users') }}
),
{%- else %}

deleted_transactions as (
    select gone.row_id as id from {{ source('ops', 'deleted_rows') }} as gone
    where gone.table_name = 'app.transactions'
        and exists (select from {{ ref('fct_transactions') }} as mart where mart.transaction_id = gone.row_id)
        and not exists (select from {{ ref('stg_app__transactions') }} as app where app.transaction_id = gone.row_id)
),

deleted_interactions as (
    select gone.row_id as id from {{ source('ops', 'deleted_rows') }} as gone
    where gone.table_name = 'app.coaching_interactions'
        and exists (select from {{ ref('fct_coaching_outcomes') }} as mart where mart.interaction_id = gone.row_id)
        and not exists (
            select from {{ ref('stg_app__coaching_interactions') }} as app where app.interaction_id = gone.row_id
        )
),
{%- endif %}

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
    {%- if not recent %}
    union all
    (select 'dim_users', id from mart_users
     except select 'dim_users', id from source_users)
    union all
    (select 'dim_users', id from source_users
     except select 'dim_users', id from mart_users)
    {%- else %}
    union all
    select 'fct_transactions: deleted in the app', id from deleted_transactions
    union all
    select 'fct_coaching_outcomes: deleted in the app', id from deleted_interactions
    {%- endif %}
)

select * from final
