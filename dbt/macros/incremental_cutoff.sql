{#
    Lower bound of what an incremental run recomputes: the newest value of `column` in `relation` (the
    model being built, by default) minus the late-row lookback (var late_row_lookback_days).
    `kind` is 'date' or 'timestamp'.
#}
{% macro incremental_cutoff(column, kind='date', relation=none) -%}
    {%- set relation = relation if relation is not none else this -%}
    {%- if kind == 'date' -%}
        (select coalesce(max({{ column }}), date '1900-01-01') - {{ var('late_row_lookback_days') }} from {{ relation }})
    {%- else -%}
        (select coalesce(max({{ column }}), timestamptz '1900-01-01 00:00+00')
            - interval '{{ var('late_row_lookback_days') }} days' from {{ relation }})
    {%- endif -%}
{%- endmacro %}
