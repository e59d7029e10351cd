{#
    Lower bound of what an incremental run recomputes: the newest `column` (updated_at) in `relation` (the
    model being built, by default) minus var late_update_lookback_hours (rows committed late by a long
    transaction carry an updated_at before they became visible). When the node runs it is read first and
    written as a literal, so Postgres plans the filter with the column's statistics (an index scan of the
    few recent rows), which it cannot do for a subquery (it guesses a third of the table and scans it all).
#}
{% macro incremental_cutoff(column, relation=none) -%}
    {%- set relation = relation if relation is not none else this -%}
    {%- set query -%}
        select coalesce(max({{ column }}), timestamptz '1900-01-01 00:00+00')
            - interval '{{ var('late_update_lookback_hours') }} hours' from {{ relation }}
    {%- endset -%}
    {%- if execute -%}
        {%- set newest = run_query(query).columns[0].values()[0] -%}
        timestamptz '{{ newest.isoformat() }}'
    {%- else -%}
        ({{ query }})
    {%- endif -%}
{%- endmacro %}
