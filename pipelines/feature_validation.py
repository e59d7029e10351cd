"""What the feature gate checks beyond the table suite: one suite per feature group and distribution bounds.

Each `great_expectations/expectations/features_<group>.json` holds the ranges and null rates of the
features of that group (fincoach.feature_spec `group`) and, in `meta.distribution`, how far each mean may
move from the previous published snapshot: within its mean +- (max_mean_shift_sd x its sd + abs_tolerance).
Those bounds become `expect_column_mean_to_be_between` expectations at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import pandas as pd

from fincoach import lake
from fincoach.feature_spec import FEATURES, GROUPS
from pipelines.snapshots import published_snapshots

log = logging.getLogger(__name__)

GROUP_SUITES = tuple(f"features_{g}" for g in GROUPS)


def previous_snapshot(as_of: datetime) -> tuple[datetime, pd.DataFrame] | None:
    """(as_of, features) of the newest published snapshot strictly before `as_of` that has every feature column."""
    names = [f.name for f in FEATURES]
    for prev_as_of, relpath in reversed(published_snapshots(before=as_of)):
        if prev_as_of >= as_of:
            continue
        table = lake.read_table(relpath)
        if set(names) <= set(table.column_names):
            return prev_as_of, table.select(names).to_pandas()
    return None


def distribution_expectations(suite: dict, previous: pd.DataFrame | None, rows: int) -> list[dict]:
    """Mean bounds per feature of the suite's group against `previous` (none without enough rows on both sides)."""
    rule = suite["meta"]["distribution"]
    if previous is None or len(previous) < rule["min_rows"] or rows < rule["min_rows"]:
        return []
    out = []
    for f in FEATURES:
        if f.group != suite["meta"]["group"]:
            continue
        mean, sd = float(previous[f.name].mean()), float(previous[f.name].std(ddof=0))
        margin = rule["max_mean_shift_sd"] * sd + rule["abs_tolerance"]
        out.append({
            "type": "expect_column_mean_to_be_between",
            "kwargs": {"column": f.name, "min_value": mean - margin, "max_value": mean + margin},
            "meta": {"severity": rule["severity"], "notes": f"previous snapshot: mean {mean:.6g}, sd {sd:.6g}"},
        })
    return out


def group_suites(load_suite: Callable[[str], dict], as_of: datetime, rows: int) -> tuple[list[tuple[str, list[dict]]], dict]:
    """(suite name, expectation configs) per feature group, and what the distribution check compared with."""
    previous = previous_snapshot(as_of)
    prev_frame = previous[1] if previous else None
    suites = []
    for name in GROUP_SUITES:
        suite = load_suite(name)
        suites.append((name, [*suite["expectations"], *distribution_expectations(suite, prev_frame, rows)]))
    info = {
        "previous_as_of": previous[0].isoformat() if previous else None,
        "previous_rows": len(prev_frame) if prev_frame is not None else 0,
        "distribution_checked": any(
            e["type"] == "expect_column_mean_to_be_between" and "previous snapshot" in e["meta"].get("notes", "")
            for _, configs in suites for e in configs
        ),
    }
    return suites, info
