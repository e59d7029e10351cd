"""Re-runnable schema migrations: ordered SQL files, each applied once and recorded in ops.schema_migrations."""

from __future__ import annotations

import logging
from importlib import resources

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

_LOCK_KEY = 7_341_001  # advisory lock: two processes migrating at once take turns


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    folder = resources.files("fincoach") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name, f.read_text()) for f in files]


def migrate(engine: Engine) -> list[str]:
    """Apply the migrations not applied yet; return the names applied now."""
    applied: list[str] = []
    with engine.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        conn.execute(sa.text("create schema if not exists ops"))
        conn.execute(
            sa.text(
                "create table if not exists ops.schema_migrations "
                "(name text primary key, applied_at timestamptz not null default now())"
            )
        )
        done = set(conn.execute(sa.text("select name from ops.schema_migrations")).scalars())
        for name, sql in migration_files():
            if name in done:
                continue
            log.info("applying migration %s", name)
            conn.connection.driver_connection.execute(sql)  # raw: the SQL may contain % (format())
            conn.execute(sa.text("insert into ops.schema_migrations (name) values (:n)"), {"n": name})
            applied.append(name)
    return applied
