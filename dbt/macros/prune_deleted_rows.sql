{#
    Post-hook of an incremental mart: drop the tombstones (source ops.deleted_rows) of `source_table` whose
    row the mart no longer holds. A tombstone matters only while the deleted row is still in the mart (the
    drift test tests/assert_incremental_marts_match_their_sources.sql then finds it and the build rebuilds
    the mart whole); once the row is out (a full refresh, an erasure, or deleted before it was ever built)
    it can never be needed again, so the table holds about the deletions not yet repaired: no age limit
    or build bookkeeping. One probe of the mart's unique `key` index per tombstone of the table.
#}
{% macro prune_deleted_rows(source_table, key) -%}
    delete from {{ source('ops', 'deleted_rows') }} as gone
    where gone.table_name = '{{ source_table }}'
        and not exists (select from {{ this }} as mart where mart.{{ key }} = gone.row_id)
{%- endmacro %}
