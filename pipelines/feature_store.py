"""The offline feature store: point-in-time reads of the lake snapshots and the historical backfill.

Snapshots live under `features/as_of=.../features.parquet` with pseudonymised user ids. A point-in-time
join gives, for any (user, time), the features of the newest snapshot published at or before that time:
what a model scoring the user then would have seen, never anything later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from fincoach import lake
from fincoach.feature_spec import FEATURE_NAMES
from fincoach.pseudonym import is_pseudonym, pseudonymise_many
from pipelines.feature_math import FeatureBuildError, as_utc
from pipelines.features import build_features, publish_features
from pipelines.snapshots import published_snapshots
from pipelines.validation import validate_features

log = logging.getLogger(__name__)

MAX_BACKFILL_SNAPSHOTS = 10_000


def _pseudonyms(user_ids: pd.Series) -> pd.Series:
    """Pseudonyms for a column of pseudonyms or app user ids (the lake knows only pseudonyms)."""
    done = user_ids.map(is_pseudonym).astype(bool)
    out = user_ids.astype(object).copy()
    out[~done] = pseudonymise_many(user_ids[~done].tolist())
    return out.astype(str)


def point_in_time_join(requests: pd.DataFrame, max_staleness: timedelta | None = None) -> pd.DataFrame:
    """`requests` (user_id, at) with `snapshot_as_of` and every feature as of `at`.

    Each row gets the newest published snapshot with as_of <= at (NaN features when there is none, when
    it is older than `max_staleness`, or when the user is not in it). user_id may be app ids or pseudonyms.
    """
    missing = {"user_id", "at"} - set(requests.columns)
    if missing:
        raise FeatureBuildError(f"point_in_time_join needs columns user_id and at; missing {sorted(missing)}")
    out = requests.copy()
    out["at"] = pd.to_datetime(out["at"], utc=True)
    key = _pseudonyms(out["user_id"])
    found = published_snapshots()
    times = pd.DatetimeIndex([pd.Timestamp(t) for t, _ in found]) if found else pd.DatetimeIndex([], tz="UTC")
    pos = times.searchsorted(out["at"].to_numpy(), side="right") - 1  # newest as_of <= at
    chosen = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
    ok = pos >= 0
    chosen[ok] = times[pos[ok]]
    if max_staleness is not None:
        chosen[(out["at"] - chosen) > max_staleness] = pd.NaT
    out["snapshot_as_of"] = chosen
    features = pd.DataFrame(np.nan, index=out.index, columns=list(FEATURE_NAMES))
    for i in sorted(set(pos[ok & chosen.notna().to_numpy()].tolist())):
        snapshot = lake.read_table(found[i][1]).to_pandas().set_index("user_id")
        rows = chosen == times[i]
        features.loc[rows, list(FEATURE_NAMES)] = snapshot.reindex(key[rows])[list(FEATURE_NAMES)].to_numpy()
    return pd.concat([out, features], axis=1)


def backfill_times(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """The as_ofs of a backfill: start, start + every, ... up to and including end."""
    start, end = as_utc(start), as_utc(end)
    if end < start:
        raise FeatureBuildError(f"backfill end {end.isoformat()} is before start {start.isoformat()}")
    if every <= timedelta(0):
        raise FeatureBuildError(f"backfill step must be positive, got {every}")
    n = int((end - start) / every) + 1
    if n > MAX_BACKFILL_SNAPSHOTS:
        raise FeatureBuildError(f"{n} snapshots from {start} to {end}: more than {MAX_BACKFILL_SNAPSHOTS}; use a larger step")
    return [start + i * every for i in range(n)]


def backfill(
    engine: Engine, start: datetime, end: datetime, every: timedelta = timedelta(days=1),
    run_prefix: str = "backfill", progress: Callable[[datetime, dict], None] | None = None,
) -> list[dict]:
    """Build, validate and publish (lake only) the snapshot of every as_of from start to end, oldest first.

    Rerunning a range replaces its snapshots with identical ones. A failed gate stops the backfill at
    that as_of (ValidationFailed), keeping what was published before it.
    """
    results = []
    for as_of in backfill_times(start, end, every):
        started = time.perf_counter()
        run_id = f"{run_prefix}-{as_of.strftime('%Y%m%dT%H%M%S')}"
        built = build_features(engine, as_of, run_id)
        validate_features(built, run_id)
        published = publish_features(built, run_id, online=False)
        published["seconds"] = round(time.perf_counter() - started, 2)
        results.append(published)
        if progress:
            progress(as_of, published)
    log.info("backfilled %d snapshots from %s to %s", len(results), start.isoformat(), end.isoformat())
    return results
