-- dim_users is incremental (issue 3): the hourly build rebuilds only the users whose inputs changed. A
-- deleted account, debt or goal leaves no updated_at behind, and neither does a user deleted from app.users,
-- so these triggers record the user_id of every deleted row (table_name 'app.<table>', row_id the user_id):
-- the next dim_users run rebuilds those users, drops the rows of users gone from app.users, and prunes the
-- tombstones older than its cutoff (dbt/macros/user_tombstones.sql). Unlike the row-id tombstones of 0006
-- these name a user: the erasure deletes the erased users' ones (pipelines/erasure.py).
create trigger record_deleted_rows after delete on app.users
    referencing old table as gone
    for each statement execute function ops.record_deleted_rows('user_id');

create trigger record_deleted_rows after delete on app.accounts
    referencing old table as gone
    for each statement execute function ops.record_deleted_rows('user_id');

create trigger record_deleted_rows after delete on app.debts
    referencing old table as gone
    for each statement execute function ops.record_deleted_rows('user_id');

create trigger record_deleted_rows after delete on app.goals
    referencing old table as gone
    for each statement execute function ops.record_deleted_rows('user_id');

-- The hourly dim_users run reads the accounts, debts and goals of each changed user: one index probe per
-- user and table instead of a scan of the whole table (a cascade from app.users reads them the same way).
create index on app.accounts (user_id);
create index on app.debts (user_id);
create index on app.goals (user_id);
