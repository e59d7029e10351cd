{#
    Models land in exactly the schema they name (`analytics`), not dbt's default `<target>_<custom>`:
    analysts and the feature pipeline query analytics.<model> whatever the target.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
