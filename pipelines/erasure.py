"""Right to erasure: remove users from Postgres and from every Parquet file of the lake that holds them.

A request is a row of ops.erasure_requests; `process_erasure_requests` handles every pending one in one
pass: in Postgres, the rows with that user_id in every base table of the schemas app, features, serving and
analytics (app.users last; its children cascade), the tombstones those deletes write that name the user
(ops.deleted_rows), the pseudonym mapping, and the pseudonym inside recorded validation samples; in the
lake, every file under raw/, quarantine/, features/ and recommendations/ whose `user_id` column (the app
id, or its pseudonym) holds the user is rewritten without those rows (removed when nothing is left). The request row itself (user id, times, counts) stays as the record that the
erasure happened. Idempotent: a retry after a failure finds nothing more to remove and completes.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import sqlalchemy as sa

from fincoach import lake
from fincoach.pseudonym import pseudonymise_many
from pipelines.raw_lake import lake_lock

log = logging.getLogger(__name__)

LAKE_LAYERS = ("raw", "quarantine", "features", "recommendations")
SCHEMAS = ("app", "features", "serving", "analytics")
_INTEGER_TYPES = ("bigint", "integer", "smallint", "numeric")
# The tables whose delete trigger records the user_id (migration 0008): their tombstones in ops.deleted_rows
# name the user, unlike the row-id ones of the others.
_USER_TOMBSTONES = ("app.users", "app.accounts", "app.debts", "app.goals")


def request_erasure(engine: sa.Engine, user_id: int) -> int:
    """Queue the erasure of `user_id`; returns the request id."""
    if not isinstance(user_id, int) or user_id <= 0:
        raise ValueError(f"user_id must be a positive integer (app.users.user_id), got {user_id!r}")
    with engine.begin() as conn:
        return conn.execute(
            sa.text("insert into ops.erasure_requests (user_id) values (:u) returning id"), {"u": user_id}
        ).scalar_one()


def _tables_with_user_id(conn: sa.Connection) -> list[tuple[str, str, str]]:
    """(schema, table, data type of user_id) of every base table holding users; app.users comes last."""
    rows = conn.execute(
        sa.text(
            "select c.table_schema, c.table_name, c.data_type from information_schema.columns c "
            "join information_schema.tables t using (table_schema, table_name) "
            "where c.column_name = 'user_id' and t.table_type = 'BASE TABLE' and c.table_schema = any(:s) "
            "order by (c.table_schema = 'app' and c.table_name = 'users'), c.table_schema, c.table_name"
        ),
        {"s": list(SCHEMAS)},
    ).all()
    return [(r.table_schema, r.table_name, r.data_type) for r in rows]


def _erase_postgres(conn: sa.Connection, ids: list[int], names: list[str]) -> Counter:
    removed: Counter = Counter()
    for schema, table, dtype in _tables_with_user_id(conn):
        keys = ids if dtype in _INTEGER_TYPES else [*names, *map(str, ids)]
        cast = "bigint[]" if dtype in _INTEGER_TYPES else "text[]"
        n = conn.execute(
            sa.text(f'delete from "{schema}"."{table}" where user_id = any(cast(:k as {cast}))'), {"k": keys}
        ).rowcount
        if n:
            removed[f"{schema}.{table}"] += n
    # written by the deletes above; dim_users needs none of them (the erasure deleted the users' rows)
    removed["ops.deleted_rows"] += conn.execute(
        sa.text("delete from ops.deleted_rows where table_name = any(:t) and row_id = any(:ids)"),
        {"t": list(_USER_TOMBSTONES), "ids": ids},
    ).rowcount
    removed["ops.user_pseudonyms"] += conn.execute(
        sa.text("delete from ops.user_pseudonyms where user_id = any(:ids)"), {"ids": ids}
    ).rowcount
    for name in names:  # failed-expectation samples may quote a pseudonym
        removed["ops.validation_results"] += conn.execute(
            sa.text(
                "update ops.validation_results set details = replace(details::text, :p, '[erased]')::jsonb "
                "where strpos(details::text, :p) > 0"
            ),
            {"p": name},
        ).rowcount
    return removed


def _lake_files() -> list[str]:
    """Paths (inside the lake filesystem) of every Parquet file of the layers that can hold users."""
    fs, root = lake.filesystem()
    out = []
    for layer in LAKE_LAYERS:
        if not lake.exists(layer):
            continue
        for info in fs.get_file_info(pafs.FileSelector(f"{root}/{layer}", recursive=True)):
            if info.type == pafs.FileType.File and info.base_name.endswith(".parquet") \
                    and not info.base_name.startswith("."):
                out.append(info.path)
    return sorted(out)


def _erase_lake(ids: list[int], names: list[str]) -> Counter:
    fs, root = lake.filesystem()
    removed: Counter = Counter()
    as_int, as_text = pa.array(ids, pa.int64()), pa.array([*names, *map(str, ids)], pa.string())
    for path in _lake_files():
        schema = pq.read_schema(path, filesystem=fs)
        if "user_id" not in schema.names:
            continue
        typ = schema.field("user_id").type
        keys = as_int if pa.types.is_integer(typ) else as_text if pa.types.is_string(typ) else None
        if keys is None:
            continue
        column = pq.read_table(path, columns=["user_id"], filesystem=fs)["user_id"]
        hit = pc.is_in(column, pc.cast(keys, typ))
        n = int(pc.sum(hit).as_py() or 0)
        if not n:
            continue
        relpath = path.removeprefix(root).strip("/")
        kept = pq.read_table(path, filesystem=fs).filter(pc.invert(hit))
        if kept.num_rows:
            lake.write_parquet(kept, relpath)
        else:
            fs.delete_file(path)
        removed[f"lake {relpath.split('/', 1)[0]}/"] += n
    return removed


def process_erasure_requests(engine: sa.Engine) -> dict:
    """Carry out every pending erasure request; returns {"requests", "users", "removed": {where: rows}}."""
    with engine.connect() as conn:
        pending = conn.execute(
            sa.text("select id, user_id from ops.erasure_requests where processed_at is null order by id")
        ).all()
    if not pending:
        return {"requests": 0, "users": 0, "removed": {}}
    ids = sorted({r.user_id for r in pending})
    with lake_lock(engine, exclusive=True):  # no extract writes between the deletes and the lake scan
        with engine.begin() as conn:
            known = conn.execute(
                sa.text("select pseudonym from ops.user_pseudonyms where user_id = any(:ids)"), {"ids": ids}
            ).scalars().all()
            names = sorted({*pseudonymise_many(ids), *known})
            removed = _erase_postgres(conn, ids, names)
        removed.update(_erase_lake(ids, names))
    summary = dict(sorted(removed.items()))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "update ops.erasure_requests set processed_at = now(), details = cast(:d as jsonb) "
                "where id = any(:r)"
            ),
            {"d": json.dumps({"removed": summary, "batch_users": len(ids)}), "r": [r.id for r in pending]},
        )
    log.info("erased %d user(s) (%d request(s)): %s", len(ids), len(pending), summary)
    return {"requests": len(pending), "users": len(ids), "removed": summary}


def erase_user(engine: sa.Engine, user_id: int) -> dict:
    """Queue and process the erasure of one user now (with any other pending request)."""
    request_id = request_erasure(engine, user_id)
    return {"request_id": request_id, **process_erasure_requests(engine)}
