{#
    The age band of a birth year this year: 18-29, 30-44, 45-59, 60+ (the segments analysts group by).
#}
{% macro age_band(birth_year) -%}
    case
        when extract(year from current_date) - {{ birth_year }} < 30 then '18-29'
        when extract(year from current_date) - {{ birth_year }} < 45 then '30-44'
        when extract(year from current_date) - {{ birth_year }} < 60 then '45-59'
        else '60+'
    end
{%- endmacro %}

{#
    The segment of a user: '<income_band> income, <age band>' (dim_users.user_segment).
#}
{% macro user_segment(income_band, birth_year) -%}
    {{ income_band }} || ' income, ' || {{ age_band(birth_year) }}
{%- endmacro %}
