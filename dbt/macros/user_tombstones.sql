{#
    The tombstones (source ops.deleted_rows) that name a user rather than a row: the app tables whose
    delete trigger records the user_id of the deleted rows (migration 0008). dim_users rebuilds the users
    tombstoned since its cutoff: a deleted account, debt or goal changes their row and leaves no updated_at.
#}
{% macro user_tombstone_tables() -%}
    {%- do return(['app.users', 'app.accounts', 'app.debts', 'app.goals']) -%}
{%- endmacro %}

{#
    Pre-hook of dim_users: delete the rows of the users deleted from app.users since the cutoff the run
    reads (a pre-hook renders before the model changes the table, so the same one). delete+insert only
    replaces the keys the run selects, and a deleted user has no row to select: without this, their row would
    stay until a full refresh. One probe of app.users' primary key per tombstone.
#}
{% macro delete_users_gone_from_app() -%}
    {%- if is_incremental() -%}
    delete from {{ this }} as mart
    using {{ source('ops', 'deleted_rows') }} as gone
    where gone.table_name = 'app.users'
        and gone.deleted_at >= {{ incremental_cutoff('updated_at') }}
        and mart.user_id = gone.row_id
        and not exists (select from {{ ref('stg_app__users') }} as app where app.user_id = gone.row_id)
    {%- endif -%}
{%- endmacro %}

{#
    Post-hook of dim_users: drop the user tombstones older than the cutoff of the table as built now. Each
    was read by this run or an earlier one (a deletion commits within the lookback of its deleted_at: the
    assumption behind every cutoff), and no later run reads it again: each reads from its own cutoff on,
    which is not earlier than this one unless the newest row left the table (an erased or deleted user),
    when it only reads more. The tombstones from the cutoff on stay for the next run, so the table holds
    about the last lookback's deletions: no age limit or bookkeeping. Row-id tombstones (other table names)
    are left to prune_deleted_rows.
#}
{% macro prune_user_tombstones() -%}
    delete from {{ source('ops', 'deleted_rows') }}
    where table_name in ({{ sql_values(user_tombstone_tables()) }})
        and deleted_at < {{ incremental_cutoff('updated_at') }}
{%- endmacro %}
