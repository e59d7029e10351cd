"""The offline feature store on seeded data: CLI backfill, point-in-time join, and no leakage from later rows."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from fincoach.feature_spec import FEATURE_NAMES
from fincoach.pseudonym import pseudonymise
from pipelines.analytics_build import build_analytics
from pipelines.feature_store import backfill, backfill_times, point_in_time_join
from pipelines.features import FeatureBuildError, compute_features, load_snapshot
from pipelines.snapshots import published_snapshots

pytestmark = pytest.mark.slow

END = dt.date(2024, 3, 1)  # far from the as_ofs of the other test modules sharing the lake
FIRST, LAST = dt.datetime(2024, 2, 20, tzinfo=dt.UTC), dt.datetime(2024, 2, 22, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def seeded(engine):
    from pipelines.seed import seed

    with engine.begin() as conn:
        conn.execute(sa.text("truncate app.users, app.market_conditions restart identity cascade"))
    seed(engine, users=40, days=75, seed=8, end=END)
    build_analytics("store")
    out = subprocess.run(
        [sys.executable, "-m", "fincoach.cli", "features", "backfill", "--start", FIRST.date().isoformat(),
         "--end", LAST.date().isoformat(), "--every", "1d", "--skip-dbt"],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 snapshots published" in out.stdout
    return engine


def _snapshots() -> dict[dt.datetime, str]:
    return {t: p for t, p in published_snapshots() if FIRST <= t <= LAST}


def test_backfill_publishes_one_validated_snapshot_per_day_to_the_lake_only(seeded):
    assert sorted(_snapshots()) == backfill_times(FIRST, LAST, dt.timedelta(days=1))
    with seeded.connect() as conn:
        online = conn.execute(sa.text("select count(*) from features.user_features_latest where as_of <= :t"),
                              {"t": LAST}).scalar()
        runs = conn.execute(sa.text("select count(*) from ops.validation_results where run_id like 'backfill-2024022%'")).scalar()
    assert online == 0 and runs >= 3


def test_point_in_time_join_gives_the_features_of_the_snapshot_in_force(seeded):
    day2 = FIRST + dt.timedelta(days=1)
    requests = pd.DataFrame({
        "user_id": [1, 1, 2, pseudonymise(3), 1],
        "at": [day2 + dt.timedelta(hours=13), day2, FIRST - dt.timedelta(seconds=1), LAST + dt.timedelta(hours=1),
               LAST + dt.timedelta(days=5)],
    })
    joined = point_in_time_join(requests, max_staleness=dt.timedelta(days=2))
    assert list(joined.snapshot_as_of[:4]) == [pd.Timestamp(day2), pd.Timestamp(day2), pd.NaT, pd.Timestamp(LAST)]
    assert pd.isna(joined.snapshot_as_of[4])  # older than max_staleness
    expected = compute_features(seeded, day2).loc[1, list(FEATURE_NAMES)].to_numpy(dtype=float)
    assert joined.loc[0, list(FEATURE_NAMES)].to_numpy(dtype=float) == pytest.approx(expected)
    assert joined.loc[2, list(FEATURE_NAMES)].isna().all()
    with pytest.raises(FeatureBuildError, match="needs columns user_id and at"):
        point_in_time_join(requests.drop(columns=["at"]))


def test_rows_after_as_of_never_change_a_rebuilt_snapshot(seeded):
    """Runs last: rewrites the history after the first as_of, rebuilds it and compares."""
    before = load_snapshot(_snapshots()[FIRST])
    later = FIRST + dt.timedelta(hours=1)
    with seeded.begin() as conn:  # double every later amount (balances follow), move later sessions, add nudges
        conn.execute(sa.text(
            "update app.accounts a set current_balance = current_balance + coalesce(("
            " select sum(amount) from app.transactions t where t.account_id = a.account_id and occurred_at > :t), 0)"
        ), {"t": FIRST})
        conn.execute(sa.text("update app.transactions set amount = amount * 2 where occurred_at > :t"), {"t": FIRST})
        conn.execute(sa.text("update app.user_sessions set start_time = start_time + interval '1 minute', "
                             "end_time = end_time + interval '1 minute' where start_time > :t"), {"t": FIRST})
        conn.execute(sa.text(
            "insert into app.coaching_interactions (request_id, user_id, action_id, action_type, propensity, "
            "model_version, source, served_at, response, responded_at) "
            "select 'late-' || user_id, user_id, 1, 'SAVE_MORE', 0.5, 'test', 'online', :t, 'accepted', :t "
            "from app.users"
        ), {"t": later})
        conn.execute(sa.text("update app.market_conditions set index_level = index_level * 3 where day >= :d"),
                     {"d": FIRST.date()})
    build_analytics("store-later")
    [result] = backfill(seeded, FIRST, FIRST, run_prefix="rebuilt")
    after = load_snapshot(result["relpath"])
    pd.testing.assert_frame_equal(after, before)
