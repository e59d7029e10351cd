{#
    Generic test: no two rows share the same values of `combination_of_columns` (the grain of a model).
    Written here because dbt packages (dbt_utils) cannot be installed in every environment.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

grouped as (
    select
        {{ combination_of_columns | join(',\n        ') }},
        count(*) as n_rows
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
)

select *
from grouped
where n_rows > 1

{% endtest %}
