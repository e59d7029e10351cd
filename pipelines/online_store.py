"""The online feature store features.user_features_latest: real user ids, swapped in one transaction."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from fincoach.db import get_engine
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
from fincoach.pseudonym import app_user_ids

_SWAP_SQL = (
    "delete from features.user_features_latest",
    "insert into features.user_features_latest (user_id, as_of, feature_spec_version, {cols}) "
    "select user_id, %(as_of)s, %(version)s, {cols} from incoming_features",
)


def real_user_ids(pseudonyms: pd.Series) -> pd.Series:
    """The app user id of each pseudonym (NA for a pseudonym of no current user, e.g. an erased one)."""
    with get_engine().connect() as conn:
        return app_user_ids(conn, pseudonyms)


def swap_online_store(frame: pd.DataFrame, as_of: datetime) -> int:
    """Replace the whole online feature table with `frame` (real user_id + features); rows written.

    One transaction: readers see the old or the new set, never a mix.
    """
    cols = ", ".join(FEATURE_NAMES)
    with get_engine().begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            # Writers queue here; readers (ACCESS SHARE) are never blocked.
            cur.execute("lock table features.user_features_latest in exclusive mode")
            cur.execute(
                "create temp table incoming_features on commit drop as "
                f"select user_id, {cols} from features.user_features_latest with no data"
            )
            with cur.copy(f"copy incoming_features (user_id, {cols}) from stdin") as copy:
                values = [frame["user_id"].astype("int64").tolist()]
                values += [frame[name].astype("float64").tolist() for name in FEATURE_NAMES]
                for row in zip(*values, strict=True):
                    copy.write_row(row)
            for statement in _SWAP_SQL:
                cur.execute(statement.format(cols=cols), {"as_of": as_of, "version": FEATURE_SPEC_VERSION})
    return len(frame)


def read_online_store(engine: sa.Engine) -> pd.DataFrame:
    """The online table, by user_id (for the incremental refresh and tests)."""
    with engine.connect() as conn:
        return pd.read_sql(sa.text("select * from features.user_features_latest order by user_id"), conn)
