{#
    A list of strings as a SQL value list: ['a', 'b'] -> 'a', 'b' (for `in (...)` with a category var).
#}
{% macro sql_values(values) -%}
    {%- for value in values -%}
        '{{ value }}'{{ ", " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}
