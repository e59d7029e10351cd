{#
    Lower bound of what an incremental run recomputes: the newest value of `column` in `relation` (the
    model being built, by default) minus the lookback for late rows. `kind` 'date' (an event day: rows
    from delayed devices, var late_row_lookback_days) or 'timestamp' (updated_at: rows committed late by
    a long transaction, var late_update_lookback_hours). When the node runs it is read first and written as a literal, so Postgres plans
    the filter with the column's statistics (an index scan of the few recent rows), which it cannot do for
    a subquery (it guesses a third of the table and scans it all).
#}
{% macro incremental_cutoff(column, kind='date', relation=none) -%}
    {%- set relation = relation if relation is not none else this -%}
    {%- if kind == 'date' -%}
        {%- set query -%}
            select coalesce(max({{ column }}), date '1900-01-01') - {{ var('late_row_lookback_days') }} from {{ relation }}
        {%- endset -%}
    {%- else -%}
        {%- set query -%}
            select coalesce(max({{ column }}), timestamptz '1900-01-01 00:00+00')
                - interval '{{ var('late_update_lookback_hours') }} hours' from {{ relation }}
        {%- endset -%}
    {%- endif -%}
    {%- if execute -%}
        {%- set newest = run_query(query).columns[0].values()[0] -%}
        {{ 'date' if kind == 'date' else 'timestamptz' }} '{{ newest.isoformat() }}'
    {%- else -%}
        ({{ query }})
    {%- endif -%}
{%- endmacro %}
