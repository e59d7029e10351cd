"""Finding published feature snapshots point-in-time, and drift between the last two."""

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from fincoach import lake
from fincoach.feature_spec import FEATURE_NAMES
from pipelines.monitoring import feature_drift
from pipelines.snapshots import NoSnapshotError, latest_snapshot_uri, snapshot_dir

# every test here publishes fake snapshots: a lake of its own, so they never reach other tests
pytestmark = pytest.mark.usefixtures("own_lake")


def _publish(as_of: datetime, shift: float) -> None:
    rng = np.random.default_rng(int(as_of.timestamp()))
    cols = {"user_id": np.arange(500)}
    cols.update({n: rng.normal(shift, 1.0, 500) for n in FEATURE_NAMES})
    lake.write_parquet(pa.table(cols), f"{snapshot_dir(as_of)}/features.parquet")


def test_latest_snapshot_is_the_newest_at_or_before_the_time_asked():
    t1, t2 = datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC)
    _publish(t1, 0.0)
    _publish(t2, 0.0)
    lake.write_parquet(pa.table({"user_id": [1]}), "features/as_of=2026-03-01/features.parquet")  # stray folder
    assert latest_snapshot_uri(datetime(2026, 3, 1, 10, 30, tzinfo=UTC)).endswith("as_of=2026-03-01T100000/features.parquet")
    assert latest_snapshot_uri(datetime(2026, 3, 2, tzinfo=UTC)).endswith("as_of=2026-03-01T110000/features.parquet")
    with pytest.raises(NoSnapshotError, match="run the fincoach_hourly DAG first"):
        latest_snapshot_uri(datetime(2020, 1, 1, tzinfo=UTC))


def test_drift_is_reported_when_the_latest_snapshot_shifts():
    _publish(datetime(2026, 3, 1, 11, tzinfo=UTC), 0.0)
    t3 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    _publish(t3, 2.0)
    report = feature_drift(t3)
    assert report["status"] == "drift"
    assert set(report["drifted"]) == set(FEATURE_NAMES)
