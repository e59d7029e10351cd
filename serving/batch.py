"""Batch scoring: every user with features gets their top recommendations, swapped in whole, logged as served.

Per user the policy makes one epsilon-greedy choice among the actions the catalog mask and the guardrails
allow (rank 1, the recommendation that is served and logged in app.coaching_interactions) and the next-best
allowed actions follow by score (ranks 2..k), each with its planned amount, family and an explanation from
the user's features. Each row carries the probability that the same epsilon-greedy policy would have chosen
that action, so off-policy evaluation can use any rank. Exploration draws come from a generator seeded by
the run id, and the nudge cap counts only nudges served before `generated_at` by other runs: a rerun of a
run writes the same rows. The lake copy holds pseudonyms instead of user ids.

Writing, in one transaction (the new set, the swap and the log commit together or not at all): the rows are
COPYed (frozen) into serving.recommendations_next, a new index-free table created in the transaction like
serving.recommendations with its grants; rank 1 is logged as served; the primary key is built; then the
live table is dropped and the new one renamed into its place. Readers see the old set until the commit and
the new one after, never a mix; a run takes its turn behind another (advisory lock). The swap needs the
writing role to own serving.recommendations, and refuses a table that has gained an index or trigger.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from fincoach import lake
from fincoach.actions import ACTIONS, action_text
from fincoach.db import get_engine
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, raw_matrix
from fincoach.pseudonym import pseudonymise_many
from fincoach.settings import get_settings
from serving.batch_read import user_chunks
from serving.decide import allowed_actions, rank
from serving.explain import explanations
from serving.families import ACTION_FAMILIES, CATALOG_AMOUNTS
from serving.guardrails import UserContext
from serving.model_loader import LoadedPolicy, load_policy
from serving.prefetch import prefetch

log = logging.getLogger(__name__)

# Users read, scored and copied per round trip: bounds memory whatever the number of users.
CHUNK_ROWS = 10_000
TABLE = "serving.recommendations"
NEXT = "serving.recommendations_next"  # the new set, created in the writing transaction: no one else sees it
_SWAP_LOCK = 7_341_007  # advisory lock: two runs take turns, the second reads after the first committed

SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("rank", pa.int32()),
        ("action_id", pa.int32()),
        ("action_type", pa.string()),
        ("action_text", pa.string()),
        ("parameters", pa.struct([("amount", pa.float64()), ("category", pa.string()), ("urgency", pa.string())])),
        ("score", pa.float64()),
        ("propensity", pa.float64()),
        ("model_version", pa.string()),
        ("run_id", pa.string()),
        ("generated_at", pa.timestamp("us", tz="UTC")),
        ("expires_at", pa.timestamp("us", tz="UTC")),
        ("family", pa.string()),
        ("explanation", pa.string()),
    ]
)
COLUMNS = ", ".join(SCHEMA.names)
# The lake copy: the same rows with a pseudonym in place of the user id.
LAKE_SCHEMA = pa.schema([pa.field("user_pseudonym", pa.string()), *list(SCHEMA)[1:]])

_TYPES = np.array([a.type for a in ACTIONS], dtype=object)
_TEXTS = np.array([action_text(a.id) for a in ACTIONS], dtype=object)
_CATEGORIES = np.array([a.category for a in ACTIONS], dtype=object)
_URGENCIES = np.array([a.urgency for a in ACTIONS], dtype=object)
_PARAMETERS_JSON = np.array(
    [json.dumps({"amount": float(a.amount), "category": a.category, "urgency": a.urgency}) for a in ACTIONS],
    dtype=object,
)

_CREATE_NEXT = (
    # No indexes while loading: COPY runs at full speed and the primary key is built once, by sorting.
    f"create table {NEXT} (like {TABLE} including all excluding indexes)",
    # Carry the grants over: the new table replaces the old one for every reader.
    f"""do $$ declare g record; begin
        for g in select a.privilege_type, a.grantee from pg_class c, aclexplode(c.relacl) a
                 where c.oid = '{TABLE}'::regclass and a.grantee <> c.relowner loop
            execute 'grant ' || g.privilege_type || ' on {NEXT} to '
                    || case when g.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(g.grantee)) end;
        end loop; end $$""",
)
# The rename swap keeps only what _CREATE_NEXT recreates: refuse (before anything is replaced) a table that
# has gained an index or a trigger since; a view or foreign key on it makes the drop below fail instead.
_UNSUPPORTED = sa.text(
    f"select (select count(*) from pg_index where indrelid = '{TABLE}'::regclass and not indisprimary) "
    f"+ (select count(*) from pg_trigger where tgrelid = '{TABLE}'::regclass and not tgisinternal)"
)
_PRIMARY_KEY = f"alter table {NEXT} add constraint recommendations_next_pkey primary key (user_id, rank)"
_SWAP = (
    f"drop table {TABLE}",
    f"alter table {NEXT} rename to recommendations",
    "alter index serving.recommendations_next_pkey rename to recommendations_pkey",
)
_LOG_COLUMNS = (
    "insert into app.coaching_interactions "
    "(request_id, user_id, action_id, action_type, propensity, model_version, source, served_at) "
    "select 'batch:' || s.run_id || ':' || s.user_id, s.user_id, s.action_id, s.action_type, s.propensity, "
    f"s.model_version, 'batch', s.generated_at from {NEXT} s "
)
# The first run of a run_id with every user still in app.users: a plain insert.
_LOG_SERVED = sa.text(_LOG_COLUMNS + "where s.rank = 1")
# A rerun (its rows are there already) or users erased since they were read: skip those rows.
_LOG_SERVED_AGAIN = sa.text(
    _LOG_COLUMNS + "join app.users u on u.user_id = s.user_id where s.rank = 1 on conflict (request_id) do nothing"
)
_DROP_ERASED = sa.text(
    f"delete from {NEXT} s where not exists (select 1 from app.users u where u.user_id = s.user_id) "
    "returning s.user_id"
)
_UNIQUE_VIOLATION, _FOREIGN_KEY_VIOLATION, _LOCK_NOT_AVAILABLE = "23505", "23503", "55P03"
# One try at the swap lock: a session reading the table meanwhile waits at most this long behind it.
_LOCK_TRY_MS = 200

_RUN_ID = re.compile(r"[A-Za-z0-9_.:+-]+")


class BatchScoringError(RuntimeError):
    """Batch scoring cannot produce a usable recommendation set; the previous set stays in place."""


@dataclass
class _Chunk:
    """What one chunk of users produced."""

    rows: pa.Table
    users: int = 0  # users with rows
    unscored: Counter[str] = field(default_factory=Counter)  # users left out, by reason
    imputed_users: int = 0  # users with a non-finite feature replaced by the spec default


def score_all_users(run_id: str, generated_at: datetime, *, loaded: LoadedPolicy | None = None) -> dict[str, Any]:
    """Score every user in features.user_features_latest into serving.recommendations, the log and the lake."""
    started = time.perf_counter()
    s = get_settings()
    k, epsilon = s.recommendations_per_user, s.serving_epsilon
    _check_inputs(run_id, generated_at, k, epsilon)
    generated_at = generated_at.astimezone(UTC)
    expires_at = generated_at + timedelta(hours=s.recommendation_ttl_hours)
    loaded = loaded or load_policy()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big"))

    engine = get_engine()
    phases: Counter[str] = Counter()  # seconds per phase, for the run log (where the time goes at 1M users)
    tables: list[pa.Table] = []  # the lake copy, pseudonymised
    unscored: Counter[str] = Counter()
    read_users = scored_users = imputed_users = 0
    with engine.connect() as writer:
        # One transaction on `writer`: the new set, the swap and the log commit together or not at all.
        writer.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": _SWAP_LOCK})
        if writer.execute(_UNSUPPORTED).scalar_one():
            raise BatchScoringError(
                f"{TABLE} has an index or trigger besides its primary key, which the rename swap would drop; "
                "add it to serving.batch._SWAP first. serving.recommendations is unchanged."
            )
        for statement in _CREATE_NEXT:
            writer.execute(sa.text(statement))
        chunks = user_chunks(generated_at - timedelta(hours=s.nudge_cap_window_hours), generated_at,
                             f"batch:{run_id}:", CHUNK_ROWS)

        def scored() -> Iterator[tuple[int, _Chunk, bytes, pa.Table]]:
            # In a thread: reading, scoring and formatting the next chunk overlap the COPY of this one.
            while True:
                with _timed(phases, "read"):
                    frame = next(chunks, None)
                if frame is None:
                    return
                with _timed(phases, "score"):
                    chunk = _score_chunk(frame, loaded, k, epsilon, rng, run_id, generated_at, expires_at)
                with _timed(phases, "format"):
                    csv = _csv(chunk.rows)
                with _timed(phases, "pseudonymise"):
                    lake_rows = _for_lake(chunk.rows)
                yield len(frame), chunk, csv, lake_rows

        for n_read, chunk, csv, lake_rows in prefetch(scored()):
            read_users += n_read
            unscored.update(chunk.unscored)
            imputed_users += chunk.imputed_users
            scored_users += chunk.users
            if chunk.rows.num_rows:
                with _timed(phases, "copy"):
                    _copy(writer, csv)
                tables.append(lake_rows)
            log.info("batch %s: %d users read, %d scored, %d unscored", run_id, read_users, scored_users,
                     sum(unscored.values()))
        if read_users and not scored_users:
            raise BatchScoringError(
                f"none of the {read_users} users in features.user_features_latest could be scored "
                f"({dict(unscored)}); rebuild the features with spec {FEATURE_SPEC_VERSION} and rerun. "
                "serving.recommendations is unchanged."
            )
        with _timed(phases, "log"):
            logged, erased = _log_served(writer)
        if erased:  # users erased since they were read: no rows of theirs are swapped in or written to the lake
            scored_users -= len(erased)
            unscored["erased_during_run"] += len(erased)
            gone = pa.array(pseudonymise_many(sorted(erased)), pa.string())
            tables = [t.filter(pc.invert(pc.is_in(t.column("user_pseudonym"), gone))) for t in tables]
        with _timed(phases, "swap"):
            writer.execute(sa.text(_PRIMARY_KEY))  # built while readers still read the old set
            _lock_live_table(writer, s.recommendations_swap_wait_seconds)
            for statement in _SWAP:
                writer.execute(sa.text(statement))
        with _timed(phases, "commit"):
            writer.commit()

    rows = pa.concat_tables(tables) if tables else LAKE_SCHEMA.empty_table()
    with _timed(phases, "lake"):
        path = lake.replace_partition(rows, f"recommendations/dt={generated_at:%Y-%m-%d}", f"{run_id}.parquet")
    if unscored:
        log.warning("batch %s: %d users could not be scored: %s", run_id, sum(unscored.values()), dict(unscored))
    return {
        "users": scored_users,
        "rows": rows.num_rows,
        "model_version": loaded.model_version,
        "source": loaded.source,
        "fallback_reason": loaded.fallback_reason,
        "path": path,
        "run_id": run_id,
        "generated_at": generated_at.isoformat(),
        "expires_at": expires_at.isoformat(),
        "users_read": read_users,
        "unscored_users": sum(unscored.values()),
        "unscored": dict(unscored),
        "imputed_users": imputed_users,
        "interactions_logged": logged,
        "seconds": round(time.perf_counter() - started, 2),
        "phase_seconds": {name: round(value, 2) for name, value in phases.items()},
    }


@contextmanager
def _timed(phases: Counter[str], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] += time.perf_counter() - started


def _check_inputs(run_id: str, generated_at: datetime, k: int, epsilon: float) -> None:
    """Refuse arguments and settings that would write rows the table or the lake cannot hold."""
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run_id {run_id!r} must be letters, digits and _.:+- only (it names a lake file)")
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware (e.g. the DAG's data_interval_end)")
    if k < 1:
        raise ValueError(f"FINCOACH_RECOMMENDATIONS_PER_USER must be >= 1, got {k}")
    if not 0 <= epsilon <= 1 or (k > 1 and epsilon == 0):
        raise ValueError(
            f"FINCOACH_SERVING_EPSILON must be in (0, 1] to rank {k} actions with a propensity > 0, got {epsilon}"
        )


def _score_chunk(
    frame: pd.DataFrame,
    loaded: LoadedPolicy,
    k: int,
    epsilon: float,
    rng: np.random.Generator,
    run_id: str,
    generated_at: datetime,
    expires_at: datetime,
) -> _Chunk:
    """Recommendation rows of one chunk of feature rows, and who was left out and why."""
    unscored: Counter[str] = Counter()
    known = frame["known_user"].to_numpy(dtype=bool)
    current = (frame["feature_spec_version"] == FEATURE_SPEC_VERSION).to_numpy()
    unscored["not_in_app_users"] += int((~known).sum())
    unscored["feature_spec_mismatch"] += int((known & ~current).sum())
    frame = frame[known & current]
    if frame.empty:
        return _Chunk(SCHEMA.empty_table(), unscored=+unscored)

    values = frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    imputed = int((~np.isfinite(values)).any(axis=1).sum())  # raw_matrix puts the spec defaults there
    raw = raw_matrix(frame)
    context = UserContext(frame["opted_out"].to_numpy(dtype=bool), frame["recent_nudges"].to_numpy(dtype=np.int64))
    allowed, amounts = allowed_actions(raw, context)
    scores = np.asarray(loaded.policy.action_scores(raw), dtype=np.float64)

    # A policy that returns NaN or inf for an allowed action cannot rank it: that user is left out, and said.
    bad = (allowed & ~np.isfinite(scores)).any(axis=1)
    unscored["non_finite_scores"] += int(bad.sum())
    good = ~bad
    if not good.any():
        return _Chunk(SCHEMA.empty_table(), unscored=+unscored, imputed_users=imputed)
    raw, allowed, amounts, scores = raw[good], allowed[good], np.asarray(amounts)[good], scores[good]
    user_ids = frame["user_id"].to_numpy(dtype=np.int64)[good]
    ranked = rank(scores, allowed, amounts, k, epsilon, rng)
    n = len(user_ids)

    valid = ranked.valid  # False only where a user has fewer than k allowed actions
    action_ids = ranked.actions[valid]
    m = len(action_ids)
    ranks = np.broadcast_to(np.arange(1, k + 1, dtype=np.int32), valid.shape)[valid]
    row_of = np.broadcast_to(np.arange(n)[:, None], valid.shape)[valid]
    table = pa.table(
        {
            "user_id": pa.array(user_ids[row_of], pa.int64()),
            "rank": pa.array(ranks, pa.int32()),
            "action_id": pa.array(action_ids, pa.int32()),
            "action_type": pa.array(_TYPES[action_ids], pa.string()),
            "action_text": _texts(action_ids, ranked.amounts[valid]),
            "parameters": pa.StructArray.from_arrays(
                [
                    pa.array(ranked.amounts[valid], pa.float64()),
                    pa.array(_CATEGORIES[action_ids], pa.string()),
                    pa.array(_URGENCIES[action_ids], pa.string()),
                ],
                fields=list(SCHEMA.field("parameters").type),
            ),
            "score": pa.array(ranked.scores[valid], pa.float64()),
            "propensity": pa.array(ranked.propensities[valid], pa.float64()),
            "model_version": pa.repeat(pa.scalar(loaded.model_version, pa.string()), m),
            "run_id": pa.repeat(pa.scalar(run_id, pa.string()), m),
            "generated_at": pa.repeat(pa.scalar(generated_at, SCHEMA.field("generated_at").type), m),
            "expires_at": pa.repeat(pa.scalar(expires_at, SCHEMA.field("expires_at").type), m),
            "family": pa.array(ACTION_FAMILIES[action_ids], pa.string()),
            "explanation": explanations(raw[row_of], action_ids),
        },
        schema=SCHEMA,
    )
    return _Chunk(table, users=n, unscored=+unscored, imputed_users=imputed)


def _csv(table: pa.Table) -> bytes:
    """A chunk's rows as CSV for COPY (written by Arrow; parameters as JSON text for jsonb)."""
    csv_table = table.set_column(SCHEMA.get_field_index("parameters"), "parameters", _parameters_json(table))
    for name in ("generated_at", "expires_at"):  # one time per run: format it once, not per row
        stamp = table.column(name)[0].as_py().isoformat() if table.num_rows else ""
        csv_table = csv_table.set_column(SCHEMA.get_field_index(name), name, pa.repeat(stamp, table.num_rows))
    buf = io.BytesIO()
    pa_csv.write_csv(csv_table, buf, pa_csv.WriteOptions(include_header=False))
    return buf.getvalue()


def _copy(conn: sa.Connection, csv: bytes) -> None:
    """COPY a chunk into the new table, frozen (it was created in this transaction: no later hint-bit writes)."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"copy {NEXT} ({COLUMNS}) from stdin with (format csv, freeze)") as copy:
        copy.write(csv)


def _lock_live_table(conn: sa.Connection, wait_seconds: float) -> None:
    """Lock serving.recommendations for the swap, in short tries so that a long reader stalls no one else.

    Readers then wait only for the milliseconds to the commit, and read the new table: never a half set.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with conn.begin_nested():
                conn.execute(sa.text("select set_config('lock_timeout', :t, true)"), {"t": f"{_LOCK_TRY_MS}ms"})
                conn.execute(sa.text(f"lock table {TABLE} in access exclusive mode"))
            return
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            if time.monotonic() >= deadline:
                raise BatchScoringError(
                    f"{TABLE} stayed in use by other sessions for {wait_seconds:g} s (see pg_locks); end them or "
                    "raise FINCOACH_RECOMMENDATIONS_SWAP_WAIT_SECONDS and rerun. serving.recommendations is "
                    "unchanged."
                ) from exc
        time.sleep(_LOCK_TRY_MS / 1000)


def _log_served(conn: sa.Connection) -> tuple[int, set[int]]:
    """Log every rank-1 row as served in app.coaching_interactions: (rows logged, 0 for a rerun; users erased).

    The plain insert's foreign-key checks lock each served user against deletion until the commit, so when
    it succeeds no user of the new set can be erased before the swap commits. When it fails (a rerun, or a
    user erased since the read), the rows of users no longer in app.users are deleted from the new set.
    """
    try:
        with conn.begin_nested():
            return conn.execute(_LOG_SERVED).rowcount, set()
    except sa.exc.IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) not in (_UNIQUE_VIOLATION, _FOREIGN_KEY_VIOLATION):
            raise
    erased = {row[0] for row in conn.execute(_DROP_ERASED)}
    return conn.execute(_LOG_SERVED_AGAIN).rowcount, erased


def _catalog_amounts(action_ids: np.ndarray, amounts: np.ndarray) -> bool:
    """True when every amount is the catalog's (no planner changed one)."""
    return bool(np.array_equal(amounts, CATALOG_AMOUNTS[action_ids]))


def _texts(action_ids: np.ndarray, amounts: np.ndarray) -> pa.Array:
    """Action texts, naming the planned amounts."""
    if _catalog_amounts(action_ids, amounts):
        return pa.array(_TEXTS[action_ids], pa.string())
    return pa.array([ACTIONS[a].template.format(amount=f"{x:.0f}") for a, x in zip(action_ids, amounts, strict=True)],
                    pa.string())


def _parameters_json(table: pa.Table) -> pa.Array:
    """The parameters column as JSON text (for the jsonb column)."""
    action_ids = table.column("action_id").to_numpy()
    params = table.column("parameters").combine_chunks()
    amounts = params.field("amount").to_numpy()
    if _catalog_amounts(action_ids, amounts):
        return pa.array(_PARAMETERS_JSON[action_ids], pa.string())
    return pa.array([json.dumps(p) for p in params.to_pylist()], pa.string())


def _for_lake(rows: pa.Table) -> pa.Table:
    """The rows with pseudonyms in place of user ids (the lake never holds real ids)."""
    user_ids = rows.column("user_id").to_numpy()
    unique, inverse = np.unique(user_ids, return_inverse=True)
    pseudonyms = np.array(pseudonymise_many(unique.tolist()), dtype=object)[inverse]
    return pa.Table.from_arrays([pa.array(pseudonyms, pa.string()), *rows.columns[1:]], schema=LAKE_SCHEMA)
