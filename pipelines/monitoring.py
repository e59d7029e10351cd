"""First monitoring checks: feature drift between snapshots, and the mix of actions being served."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from fincoach import lake
from fincoach.db import get_engine
from fincoach.feature_spec import FEATURE_NAMES
from pipelines.snapshots import published_snapshots

log = logging.getLogger(__name__)

PSI_ALERT = 0.25  # population stability index above which a feature is reported as drifted


def population_stability_index(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI of `actual` against `expected`, on quantile bins of `expected`."""
    expected = expected[np.isfinite(expected)]
    actual = actual[np.isfinite(actual)]
    if len(expected) == 0 or len(actual) == 0:
        return 0.0
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.allclose(actual, edges[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_drift(as_of: datetime) -> dict:
    """PSI per feature of the newest snapshot at or before `as_of` against the snapshot before it."""
    snaps = published_snapshots(as_of)
    if len(snaps) < 2:
        return {"status": "skipped", "reason": f"{len(snaps)} snapshot(s) published; drift needs two"}
    (prev_at, prev_path), (cur_at, cur_path) = snaps[-2], snaps[-1]
    prev, cur = lake.read_table(prev_path).to_pandas(), lake.read_table(cur_path).to_pandas()
    psi = {n: round(population_stability_index(prev[n].to_numpy(float), cur[n].to_numpy(float)), 4)
           for n in FEATURE_NAMES}
    drifted = sorted(n for n, v in psi.items() if v > PSI_ALERT)
    if drifted:
        log.warning("feature drift above PSI %.2f: %s", PSI_ALERT, ", ".join(drifted))
    return {
        "status": "drift" if drifted else "ok",
        "previous": prev_at.isoformat(),
        "current": cur_at.isoformat(),
        "max_psi": max(psi.values()),
        "drifted": drifted,
        "psi": psi,
    }


def served_action_mix() -> dict:
    """Share of each action among users' first recommendations, and how many came from the fallback."""
    with get_engine().connect() as conn:
        rows = conn.execute(
            sa.text(
                "select action_type, model_version, count(*) as n from serving.recommendations "
                "where rank = 1 group by action_type, model_version"
            )
        ).all()
    total = sum(r.n for r in rows)
    if total == 0:
        return {"status": "empty", "users": 0}
    mix: dict[str, int] = {}
    versions: dict[str, int] = {}
    for r in rows:
        mix[r.action_type] = mix.get(r.action_type, 0) + r.n
        versions[r.model_version] = versions.get(r.model_version, 0) + r.n
    fallback = sum(n for v, n in versions.items() if v.startswith("rules"))
    return {
        "status": "ok",
        "users": total,
        "action_share": {k: round(v / total, 4) for k, v in sorted(mix.items())},
        "model_versions": versions,
        "fallback_share": round(fallback / total, 4),
    }
