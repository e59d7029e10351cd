"""Batch scoring of 1M users into Postgres vs a plain COPY of the same result rows, measured in the same run.

Scoring here is the whole task: read the online features, guardrails, a 256-128-64 MLP (TorchScript),
ranking, explanations, staging + swap in one transaction, the served log, and the pseudonymised Parquet.
The baseline COPYs exactly the rows it wrote into an empty table of the same shape. Aim: <= 3x.
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import torch

from fincoach.actions import N_ACTIONS
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES
from fincoach.policy import ExportedPolicy
from serving import batch
from serving.model_loader import LoadedPolicy

pytestmark = pytest.mark.bench

USERS = 1_000_000


def _copy_in(engine, table: str, columns: list[str], data: pa.Table) -> None:  # noqa: ANN001
    buf = io.BytesIO()
    pa_csv.write_csv(data, buf, pa_csv.WriteOptions(include_header=False))
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur, cur.copy(f"copy {table} ({', '.join(columns)}) from stdin with (format csv)") as cp:
            cp.write(buf.getbuffer())
        raw.commit()
    finally:
        raw.close()


def _population(engine) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    ids = np.arange(1, USERS + 1)
    users = pa.table({"user_id": ids, "created_at": pa.repeat("2025-01-01T00:00:00Z", USERS),
                      "birth_year": rng.integers(1950, 2005, USERS), "income_band": pa.repeat("middle", USERS),
                      "pay_frequency": pa.repeat("monthly", USERS), "monthly_income": rng.uniform(1000, 9000, USERS).round(2),
                      "region": pa.repeat("north", USERS), "device_type": pa.repeat("ios", USERS),
                      "risk_tolerance": pa.repeat("medium", USERS)})
    _copy_in(engine, "app.users", users.column_names, users)
    features = {name: rng.uniform(0, 1, USERS) for name in FEATURE_NAMES}
    features |= {"monthly_income": rng.uniform(1000, 9000, USERS), "monthly_spend": rng.uniform(500, 7000, USERS),
                 "emergency_fund_months": rng.uniform(0, 8, USERS), "debt_total": rng.uniform(0, 20000, USERS),
                 "max_debt_apr": rng.uniform(0, 0.3, USERS), "has_active_goal": rng.integers(0, 2, USERS) * 1.0}
    table = pa.table({"user_id": ids, "as_of": pa.repeat("2026-03-01T00:00:00Z", USERS),
                      "feature_spec_version": pa.repeat(FEATURE_SPEC_VERSION, USERS), **features})
    _copy_in(engine, "features.user_features_latest", table.column_names, table)
    with engine.begin() as conn:
        conn.exec_driver_sql("analyze app.users")
        conn.exec_driver_sql("analyze features.user_features_latest")


def _mlp() -> LoadedPolicy:
    net = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, N_ACTIONS))
    policy = ExportedPolicy(torch.jit.script(net.eval()), {"model_version": "bench-mlp/1"})
    return LoadedPolicy(policy, "champion", "bench-mlp/1")


def test_batch_scoring_of_1m_users_vs_a_plain_copy(clean_db):
    _population(clean_db)
    at = datetime(2026, 3, 1, 6, tzinfo=UTC)

    started = time.perf_counter()
    result = batch.score_all_users("bench-1m", at, loaded=_mlp())
    scoring = time.perf_counter() - started

    raw = clean_db.raw_connection()
    try:
        buf = io.BytesIO()
        with raw.cursor() as cur:
            with cur.copy(f"copy (select {batch.COLUMNS} from serving.recommendations) to stdout") as cp:
                for chunk in cp:
                    buf.write(chunk)
            cur.execute("create table public.bench_copy (like serving.recommendations including all)")
            raw.commit()
            started = time.perf_counter()
            with cur.copy(f"copy public.bench_copy ({batch.COLUMNS}) from stdin") as cp:
                cp.write(buf.getbuffer())
            raw.commit()
            copying = time.perf_counter() - started
            cur.execute("drop table public.bench_copy")
            raw.commit()
    finally:
        raw.close()

    print(f"\nbatch scoring: {result['users']:,} users, {result['rows']:,} rows in {scoring:.1f} s "
          f"({result['users'] / scoring:,.0f} users/s); plain COPY of the same rows {copying:.1f} s; "
          f"ratio {scoring / copying:.2f}x (aim <= 3x); phases {result['phase_seconds']}")
    assert result["users"] == USERS and result["unscored_users"] == 0
