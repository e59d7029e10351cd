"""The one way to reach PostgreSQL: the effective URL (embedded pgserver by default) and the engine."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from fincoach.settings import get_settings

log = logging.getLogger(__name__)

EMBEDDED_DB = "fincoach"
_lock = threading.Lock()
_server: Any = None


class DatabaseConfigError(RuntimeError):
    """FINCOACH_DATABASE_URL cannot be used."""


def _embedded_server() -> Any:
    """Start (or attach to) the embedded PostgreSQL under <home>/pg; it stops when the last user exits."""
    global _server
    with _lock:
        if _server is None:
            import pgserver  # heavy-ish, and only needed for the embedded default

            pgdata = get_settings().home_dir / "pg"
            log.info("starting embedded PostgreSQL in %s", pgdata)
            _server = pgserver.get_server(pgdata, cleanup_mode="stop")
        return _server


def is_embedded() -> bool:
    """True when no FINCOACH_DATABASE_URL is set and the embedded server is used."""
    return not get_settings().database_url


def server_url() -> URL:
    """URL of the main database (no driver), starting the embedded server if that is the default."""
    configured = get_settings().database_url
    if configured:
        try:
            url = make_url(configured)
        except sa.exc.ArgumentError as exc:
            raise DatabaseConfigError(
                f"FINCOACH_DATABASE_URL is not a database URL ({exc}); "
                "expected e.g. postgresql://user:pass@host:5432/fincoach"
            ) from exc
        if not url.drivername.startswith("postgresql"):
            raise DatabaseConfigError(f"FINCOACH_DATABASE_URL must point at PostgreSQL, got {url.drivername}")
        return url.set(drivername="postgresql")
    server = _embedded_server()
    url = make_url(server.get_uri(EMBEDDED_DB))
    ensure_database(EMBEDDED_DB, base=url)
    return url


def database_url(dbname: str | None = None, driver: str = "psycopg") -> str:
    """SQLAlchemy URL (as a string with password) for `dbname` (default: the main database)."""
    url = server_url()
    if dbname:
        url = url.set(database=dbname)
    return url.set(drivername=f"postgresql+{driver}" if driver else "postgresql").render_as_string(
        hide_password=False
    )


def libpq_url(dbname: str | None = None) -> str:
    """Plain postgresql:// URL for libpq clients (psql, psycopg.connect)."""
    return database_url(dbname, driver="")


def connection_parts() -> dict[str, Any]:
    """host/port/user/password/dbname of the main database, for tools configured by fields (dbt)."""
    url = server_url()
    host = url.host or url.query.get("host") or "127.0.0.1"
    if isinstance(host, tuple):
        host = host[0]
    return {
        "host": host,
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password or "",
        "dbname": url.database or EMBEDDED_DB,
    }


def ensure_database(name: str, base: URL | None = None) -> None:
    """Create database `name` on the same server if it does not exist yet."""
    base = base or server_url()
    admin = sa.create_engine(
        base.set(drivername="postgresql+psycopg", database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("select 1 from pg_database where datname = :n"), {"n": name}).scalar()
            if not exists:
                log.info("creating database %s", name)
                try:
                    conn.execute(sa.text(f'create database "{name}"'))
                except sa.exc.ProgrammingError as exc:  # created concurrently by another process
                    if "already exists" not in str(exc):
                        raise
    finally:
        admin.dispose()


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The process-wide SQLAlchemy engine on the main database (psycopg 3)."""
    return sa.create_engine(database_url(), pool_pre_ping=True, future=True)


def reset_engine() -> None:
    """Dispose of the cached engine (after settings change)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
