"""What batch scoring reads: every user's online features and guardrail context, streamed as Arrow.

Read with the ADBC PostgreSQL driver, which streams a plain query through COPY in binary straight into
Arrow record batches (a million users in a few seconds, memory bounded by the batch size). The nudges
each user was served in the cap window, by other runs, come from a second, parametrised query.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from fincoach.db import libpq_url
from fincoach.feature_spec import FEATURE_NAMES

CONTEXT_COLUMNS = ["user_id", "feature_spec_version", "known_user", "opted_out", "recent_nudges"]

_FEATURES = (
    "select f.user_id, f.feature_spec_version, u.user_id is not null as known_user, "
    "o.user_id is not null as opted_out, "
    + ", ".join(f"f.{name}::float8 as {name}" for name in FEATURE_NAMES)
    + " from features.user_features_latest f left join app.users u on u.user_id = f.user_id"
    " left join app.coaching_opt_outs o on o.user_id = f.user_id order by f.user_id"
)
# Nudges served in [since, until) by runs other than this one (so that a rerun counts the same).
_NUDGES = (
    "select user_id, count(*)::bigint as nudges from app.coaching_interactions "
    "where served_at >= $1 and served_at < $2 and action_type <> 'NO_ACTION' "
    "and left(request_id, length($3)) <> $3 group by user_id"
)


def user_chunks(since: datetime, until: datetime, own_prefix: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Frames of at most `chunk_rows` users: CONTEXT_COLUMNS then the spec's features, by user id."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(libpq_url()) as conn, conn.cursor() as cur:
        cur.execute(_NUDGES, (since, until, own_prefix))
        nudges = cur.fetch_arrow_table()
        counts = pd.Series(nudges.column("nudges").to_numpy(), index=nudges.column("user_id").to_numpy())
        cur.execute(_FEATURES)
        for batch in cur.fetch_record_batch():
            for start in range(0, batch.num_rows, chunk_rows):
                yield _frame(batch.slice(start, chunk_rows), counts)


def _frame(batch: pa.RecordBatch, counts: pd.Series) -> pd.DataFrame:
    frame = batch.to_pandas()
    recent = frame["user_id"].map(counts) if len(counts) else pd.Series(0, index=frame.index)
    frame.insert(4, "recent_nudges", recent.fillna(0).to_numpy(dtype=np.int64))
    return frame
