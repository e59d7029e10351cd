"""Migration 0004 (feature spec v2) on a database that already holds the 0001/0002 tables with data."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from fincoach import db
from fincoach.feature_spec import FEATURES
from fincoach.migrate import migrate, migration_files


def test_v2_columns_are_added_to_a_populated_online_store_with_the_spec_defaults(engine):
    name = f"{db.server_url().database}_m{uuid.uuid4().hex[:6]}"
    db.ensure_database(name)
    old = sa.create_engine(db.database_url(name))
    try:
        with old.begin() as conn:  # a platform that ran only the first migrations, with data
            conn.execute(sa.text("create schema ops"))
            conn.execute(sa.text("create table ops.schema_migrations (name text primary key, "
                                 "applied_at timestamptz not null default now())"))
            for file, sql in migration_files():
                if file.startswith(("0001", "0002")):
                    conn.connection.driver_connection.execute(sql)
                    conn.execute(sa.text("insert into ops.schema_migrations (name) values (:n)"), {"n": file})
            v1 = [f.name for f in FEATURES[:19]]
            conn.execute(sa.text(
                f"insert into features.user_features_latest (user_id, as_of, feature_spec_version, {', '.join(v1)}) "
                f"values (7, now(), 'v1-old', {', '.join(['1'] * len(v1))})"
            ))
        assert "0004_feature_spec_v2.sql" in migrate(old)
        with old.connect() as conn:
            row = conn.execute(sa.text("select * from features.user_features_latest")).mappings().one()
            market = conn.execute(sa.text("select count(*) from app.market_conditions")).scalar()
        assert row["user_id"] == 7 and row["monthly_income"] == 1
        assert {f.name: row[f.name] for f in FEATURES[19:]} == {f.name: f.default for f in FEATURES[19:]}
        assert market == 0
    finally:
        old.dispose()
        admin = sa.create_engine(db.database_url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()
