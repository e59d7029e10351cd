"""Find published feature snapshots in the lake (`features/as_of=YYYY-MM-DDTHHMMSS/features.parquet`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fincoach import lake

log = logging.getLogger(__name__)

SNAPSHOT_ROOT = "features"
SNAPSHOT_FILE = "features.parquet"
_FORMAT = "%Y-%m-%dT%H%M%S"


class NoSnapshotError(LookupError):
    """No feature snapshot has been published yet for the time asked."""


def snapshot_dir(as_of: datetime) -> str:
    """Lake folder of the snapshot as of `as_of`."""
    return f"{SNAPSHOT_ROOT}/as_of={as_of.astimezone(UTC).strftime(_FORMAT)}"


def published_snapshots(before: datetime | None = None) -> list[tuple[datetime, str]]:
    """(as_of, relpath of the file) of every published snapshot, oldest first, optionally as_of <= before."""
    found = []
    for name in lake.list_dirs(SNAPSHOT_ROOT):
        try:
            as_of = datetime.strptime(name.removeprefix("as_of="), _FORMAT).replace(tzinfo=UTC)
        except ValueError:  # not a snapshot folder (written by hand or another tool): not ours to read
            log.warning("ignoring %s/%s: not named as_of=%s", SNAPSHOT_ROOT, name, _FORMAT)
            continue
        relpath = f"{SNAPSHOT_ROOT}/{name}/{SNAPSHOT_FILE}"
        if (before is None or as_of <= before) and lake.exists(relpath):
            found.append((as_of, relpath))
    return sorted(found)


def latest_snapshot_uri(before: datetime) -> str:
    """Full URI of the newest snapshot published as of `before` (point-in-time correct for backfills)."""
    found = published_snapshots(before)
    if not found:
        raise NoSnapshotError(
            f"no feature snapshot at or before {before.isoformat()} in {lake.uri(SNAPSHOT_ROOT)}: "
            "run the fincoach_hourly DAG first"
        )
    return lake.uri(found[-1][1])
