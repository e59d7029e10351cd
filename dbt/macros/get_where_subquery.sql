{#
    The relation a generic test reads (dbt's own macro, extended). With var `recent_rows_only` (set by the
    hourly build: pipelines.analytics_build.build_analytics(recent_tests=True)), the tests of a model whose
    config.meta has `recent_rows: {column: updated_at}` read only its rows with `column` within the late-row
    lookback of the column's newest value (incremental_cutoff): the rows an hourly run can have written,
    found through an index, so the tests cost what the new rows cost. `cutoff_from: <schema.table>` reads
    the newest value from that table's index instead: Postgres cannot read max() of a view through the
    index of its table (it scans the table), and a view that aggregates has no index at all.
    `covered_by: <model>`: the hourly build's tests of the model read no rows; its rows are tested where
    the hourly run writes them, in that model's recent rows (for a view whose last days are every user's,
    not what the hour added). Older rows were tested when they were written; a full refresh and every
    build without the var (`make test`, backfills, the CLI) test whole tables. A test's own `where`
    config still applies.
#}
{% macro get_where_subquery(relation) -%}
    {%- set predicates = [] -%}
    {%- if config.get('where') -%}
        {%- do predicates.append('(' ~ config.get('where') ~ ')') -%}
    {%- endif -%}
    {%- set recent = recent_rows_predicate(relation) -%}
    {%- if recent -%}
        {%- do predicates.append(recent) -%}
    {%- endif -%}
    {%- if predicates -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ predicates | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{% macro recent_rows_predicate(relation) -%}
    {%- if not (execute and var('recent_rows_only', false)) -%}
        {%- do return('') -%}
    {%- endif -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.alias == relation.identifier -%}
            {%- set recent = node.config.meta.get('recent_rows') -%}
            {%- if recent and recent.covered_by -%}
                {%- do return('false') -%}
            {%- elif recent -%}
                {%- set newest_in = recent.cutoff_from or relation -%}
                {%- do return(recent.column ~ ' >= ' ~ incremental_cutoff(recent.column, newest_in)) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do return('') -%}
{%- endmacro %}
