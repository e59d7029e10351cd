{#
    Lower bound of what an incremental run recomputes: the newest value of `column` already in the
    model minus the late-row lookback (var late_row_lookback_days). `kind` is 'date' or 'timestamp'.
#}
{% macro incremental_cutoff(column, kind='date') -%}
    {%- if kind == 'date' -%}
        (select coalesce(max({{ column }}), date '1900-01-01') - {{ var('late_row_lookback_days') }} from {{ this }})
    {%- else -%}
        (select coalesce(max({{ column }}), timestamptz '1900-01-01 00:00+00')
            - interval '{{ var('late_row_lookback_days') }} days' from {{ this }})
    {%- endif -%}
{%- endmacro %}
