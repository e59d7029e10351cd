-- Tombstones of rows deleted in the app tables behind the incremental marts fct_transactions and
-- fct_coaching_outcomes (issue 3). A deletion leaves no recent updated_at, so without a record of it
-- the hourly build could only find an old deleted row by comparing whole tables; with one, its drift test
-- (dbt/tests/assert_incremental_marts_match_their_sources.sql) reads the tombstones and probes the marts'
-- unique keys, at a cost that follows the deletions. The marts' post-hook drops a tombstone once its row is
-- out of the mart (dbt/macros/prune_deleted_rows.sql). No user_id on purpose: a tombstone names a row id
-- only, so erasure leaves nothing of the user here. TRUNCATE writes none (a build without the var, i.e.
-- every full test run, still compares all keys).
create table ops.deleted_rows (
    table_name         text not null,
    row_id             bigint not null,
    deleted_at         timestamptz not null default now()
);
-- The drift test and the pruning read the tombstones of one table and join them by row id.
create index on ops.deleted_rows (table_name, row_id);

-- Statement level, reading the transition table: a bulk delete (erasure, a cascade) writes its tombstones
-- in one insert rather than one trigger call per row. TG_ARGV[0] is the table's primary key column.
create or replace function ops.record_deleted_rows() returns trigger
language plpgsql as $$
begin
    execute format('insert into ops.deleted_rows (table_name, row_id) select %L, %I from gone',
                   tg_table_schema || '.' || tg_table_name, tg_argv[0]);
    return null;
end;
$$;

create trigger record_deleted_rows after delete on app.transactions
    referencing old table as gone
    for each statement execute function ops.record_deleted_rows('transaction_id');

create trigger record_deleted_rows after delete on app.coaching_interactions
    referencing old table as gone
    for each statement execute function ops.record_deleted_rows('id');
