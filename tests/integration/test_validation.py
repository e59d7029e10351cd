"""Great Expectations gates on the raw extract and the feature snapshot: pass, warn, fail, and always record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from fincoach import lake
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, FEATURES, GROUPS
from fincoach.pseudonym import pseudonymise_many
from pipelines.validation import (
    FEATURES_SUITE,
    RAW_SUITE,
    ValidationFailed,
    load_suite,
    validate_features,
    validate_raw,
)

AS_OF = pd.Timestamp("2025-04-01T00:00:00Z")


def good_features(n: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": pseudonymise_many(range(1, n + 1)), "as_of": AS_OF,
                          "feature_spec_version": FEATURE_SPEC_VERSION})
    for f in FEATURES:
        frame[f.name] = float(f.default)
    frame["monthly_income"] = rng.uniform(1000, 5000, n)
    frame["monthly_spend"] = rng.uniform(500, 3000, n)
    frame["savings_rate"] = rng.uniform(-1, 1, n)
    frame["age"] = rng.integers(20, 70, n).astype(float)
    return frame


def _stage(frame: pd.DataFrame, name: str) -> dict:
    relpath = f"features/staging/{name}.parquet"
    lake.write_parquet(pa.Table.from_pandas(frame, preserve_index=False), relpath)
    return {"rows": len(frame), "staging_path": relpath, "as_of": AS_OF.isoformat()}


def _recorded(engine: sa.Engine, run_id: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select * from ops.validation_results where run_id = :r order by id"), {"r": run_id}
        ).all()


def test_every_spec_feature_is_checked_by_the_suite_of_its_group():
    by_column: dict[str, set[str]] = {}
    for group in GROUPS:
        suite = load_suite(f"features_{group}")
        assert suite["meta"]["group"] == group and suite["meta"]["distribution"]["min_rows"] > 0
        for e in suite["expectations"]:
            assert e["meta"]["severity"] in {"critical", "warning"}
            column = e["kwargs"]["column"]
            assert next(f.group for f in FEATURES if f.name == column) == group, column
            by_column.setdefault(column, set()).add(e["type"])
    for name in FEATURE_NAMES:
        assert "expect_column_values_to_not_be_null" in by_column[name], name
        assert by_column[name] & {"expect_column_values_to_be_between", "expect_column_values_to_be_in_set"}, name
    table_suite = load_suite(FEATURES_SUITE)
    assert not {e["kwargs"].get("column") for e in table_suite["expectations"]} & set(FEATURE_NAMES)


def test_raw_suite_marks_every_expectation_with_a_severity():
    suite = load_suite(RAW_SUITE)
    assert set(suite["tables"]) == {
        "users", "accounts", "transactions", "goals", "debts", "user_events", "financial_decisions",
        "user_sessions", "coaching_interactions",
    }
    for table, expectations in suite["tables"].items():
        for e in expectations:
            assert e["meta"]["severity"] in {"critical", "warning"}, (table, e)


def test_good_features_pass_and_are_recorded(clean_db):
    result = validate_features(_stage(good_features(), "good"), "run-good")
    assert result["suite"] == "features" and result["critical_failed"] == 0
    assert result["evaluated"] == result["passed"] + result["failed"] and result["evaluated"] > 40
    [row] = _recorded(clean_db, "run-good")
    assert row.success and row.suite == "features" and row.evaluated == result["evaluated"]


def test_warnings_are_recorded_but_do_not_fail_the_gate(clean_db):
    frame = good_features()
    frame.loc[0, "age"] = 105.0  # possible, but outside the plausible range: a warning
    result = validate_features(_stage(frame, "warn"), "run-warn")
    assert result["warnings"] == 1 and result["critical_failed"] == 0
    [row] = _recorded(clean_db, "run-warn")
    assert row.success and row.failed == 1
    assert row.details["failed_expectations"][0]["column"] == "age"


def test_bad_features_raise_and_are_recorded_as_failed(clean_db):
    frame = good_features()
    frame.loc[0, "savings_rate"] = 7.0
    frame.loc[1, "debt_total"] = -50.0
    frame.loc[2, "user_id"] = frame.loc[3, "user_id"]
    frame.loc[4, "impulse_share"] = np.nan
    frame.loc[0, "market_return_3m"] = 0.5  # market features are the same for every user
    with pytest.raises(ValidationFailed) as err:
        validate_features(_stage(frame, "bad"), "run-bad")
    message = str(err.value)
    for column in ("features_financial.savings_rate", "debt_total", "user_id", "behavioural.impulse_share",
                   "features_market.market_return_3m"):
        assert column in message
    assert err.value.summary["critical_failed"] >= 5
    [row] = _recorded(clean_db, "run-bad")
    assert not row.success and row.failed >= 4
    json.dumps(row.details)  # plain JSON, NaN samples included


def test_app_user_ids_in_a_lake_snapshot_fail_the_gate(clean_db):
    frame = good_features().assign(user_id=np.arange(1, 6))
    with pytest.raises(ValidationFailed, match="expect_column_values_to_match_regex"):
        validate_features(_stage(frame, "realids"), "run-realids")


def test_a_snapshot_that_does_not_follow_the_spec_fails(clean_db):
    frame = good_features().drop(columns=["age"])
    with pytest.raises(ValidationFailed, match="expect_table_columns_to_match_ordered_list"):
        validate_features(_stage(frame, "nospec"), "run-nospec")


def _raw_files(tables: dict[str, pd.DataFrame]) -> dict:
    result = {}
    for table, frame in tables.items():
        relpath = f"raw/{table}/dt=2025-04-01/hour=00/test.parquet"
        result[table] = {"rows": len(frame), "path": lake.write_parquet(pa.Table.from_pandas(frame), relpath),
                         "low": None, "high": AS_OF.isoformat()}
    return result


def good_raw() -> dict[str, pd.DataFrame]:
    now = datetime(2025, 4, 1, tzinfo=UTC)
    users = pd.DataFrame({
        "user_id": [1, 2], "created_at": now, "birth_year": [1980, 1995], "income_band": ["low", "high"],
        "pay_frequency": ["monthly", "biweekly"], "monthly_income": [2500.0, 9000.0], "region": "north",
        "device_type": ["ios", "web"], "risk_tolerance": ["low", "high"], "tracking_opt_out": False,
        "updated_at": now,
    })
    transactions = pd.DataFrame({
        "transaction_id": [10, 11, 12], "user_id": [1, 1, 2], "account_id": [1, 1, 3],
        "amount": [2500.0, -40.5, -12.0], "category": ["income", "dining", "transport"],
        "merchant": [None, "cafe", "metro"], "is_impulse": [False, True, False], "occurred_at": now, "updated_at": now,
    })
    interactions = pd.DataFrame({
        "id": [1, 2], "request_id": ["a", "b"], "user_id": [1, 2], "action_id": [1, 9],
        "action_type": ["SAVE_MORE", "INVEST"], "propensity": [0.9, 0.05], "model_version": "v1",
        "source": ["batch", "online"], "served_at": now, "response": ["accepted", None],
        "responded_at": [now, None], "updated_at": now,
    })
    return {"users": users, "transactions": transactions, "coaching_interactions": interactions}


def test_good_raw_extract_passes_and_skips_empty_tables(clean_db):
    extracted = _raw_files(good_raw())
    extracted["goals"] = {"rows": 0, "path": None, "low": None, "high": None}
    result = validate_raw(extracted, "run-raw-good")
    assert result["suite"] == "raw_extract" and result["critical_failed"] == 0, result["failures"]
    assert result["skipped"] == ["goals"] and set(result["tables"]) == {"users", "transactions", "coaching_interactions"}
    [row] = _recorded(clean_db, "run-raw-good")
    assert row.success and row.suite == "raw_extract"


def test_bad_raw_extract_raises_naming_table_and_column(clean_db):
    raw = good_raw()
    raw["transactions"].loc[0, "category"] = "crypto"
    raw["transactions"].loc[1, "amount"] = np.inf
    raw["transactions"].loc[2, "transaction_id"] = 10
    raw["coaching_interactions"].loc[0, "propensity"] = 0.0
    raw["users"] = raw["users"].drop(columns=["income_band"])  # schema drift
    with pytest.raises(ValidationFailed) as err:
        validate_raw(_raw_files(raw), "run-raw-bad")
    message = str(err.value)
    for where in ("transactions.category", "transactions.amount", "transactions.transaction_id",
                  "coaching_interactions.propensity", "users.income_band"):
        assert where in message
    [row] = _recorded(clean_db, "run-raw-bad")
    assert not row.success and row.details["tables"]["transactions"]["failed"] >= 3


@pytest.mark.slow
def test_seeded_data_passes_both_gates(clean_db):
    """The walking skeleton on synthetic data: extract → raw gate → dbt → features → features gate."""
    from pipelines.analytics_build import build_analytics
    from pipelines.extract import extract_all
    from pipelines.features import build_features
    from pipelines.seed import seed

    seed(clean_db, users=150, days=21, seed=5)
    now = datetime.now(UTC)  # after the seed's updated_at, so the extract sees every row
    raw = validate_raw(extract_all(clean_db, now, "seeded"), "seeded")
    assert raw["critical_failed"] == 0 and len(raw["tables"]) == 9, raw["failures"]
    build_analytics("seeded")
    built = build_features(clean_db, now, "seeded")
    features = validate_features(built, "seeded")
    assert built["rows"] == 150
    assert features["critical_failed"] == 0, features["failures"]
    assert [r.suite for r in _recorded(clean_db, "seeded")] == ["raw_extract", "features"]


def _population(n: int, seed: int, income_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = good_features(n)
    frame["monthly_income"] = rng.normal(3000 + income_shift, 500, n).clip(0)
    frame["savings_rate"] = rng.uniform(-0.5, 0.5, n)
    return frame


def test_a_snapshot_whose_means_jump_from_the_previous_one_fails_before_publishing(clean_db, own_lake):
    from pipelines.snapshots import published_snapshots, snapshot_dir

    previous = _population(300, 1)
    lake.write_parquet(pa.Table.from_pandas(previous, preserve_index=False),
                       f"{snapshot_dir(AS_OF - pd.Timedelta(hours=1))}/features.parquet")
    ok = validate_features(_stage(_population(300, 2), "steady"), "run-steady")
    assert ok["critical_failed"] == 0, ok["failures"]
    assert ok["distribution"]["distribution_checked"] and ok["distribution"]["previous_rows"] == 300

    broken = _population(300, 3, income_shift=2000)  # every income up by 4 sd: an upstream unit bug
    with pytest.raises(ValidationFailed, match=r"expect_column_mean_to_be_between\(features_financial.monthly_income"):
        validate_features(_stage(broken, "jump"), "run-jump")
    assert len(published_snapshots()) == 1  # the gate raised: nothing new was published
    [row] = _recorded(clean_db, "run-jump")
    assert not row.success and row.details["distribution"]["previous_as_of"].startswith("2025-03-31T23:00")


def test_a_jump_in_what_serving_itself_did_warns_but_does_not_block_the_snapshot(clean_db, own_lake):
    from pipelines.snapshots import snapshot_dir

    # The first batch run after the history serves a nudge to every user: nudges_7d jumps by about one.
    previous = _population(300, 1)
    previous["nudges_7d"] = np.random.default_rng(1).poisson(0.5, 300).astype(float)
    lake.write_parquet(pa.Table.from_pandas(previous, preserve_index=False),
                       f"{snapshot_dir(AS_OF - pd.Timedelta(hours=1))}/features.parquet")
    served = _population(300, 2)
    served["nudges_7d"] = previous["nudges_7d"].to_numpy() + 1.5
    result = validate_features(_stage(served, "served"), "run-served")
    assert result["critical_failed"] == 0, result["failures"]
    assert any("features_recent_actions.nudges_7d" in f for f in result["failures"])
    assert result["warnings"] >= 1
