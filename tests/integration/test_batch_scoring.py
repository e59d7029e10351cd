"""Batch scoring: k allowed, ranked recommendations per user, swapped in whole, logged once, mirrored in the lake."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from fincoach import lake
from fincoach.actions import N_ACTIONS, action_text
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES, feature_index
from fincoach.policy import ExportedPolicy, Policy, write_policy_artifact
from fincoach.pseudonym import pseudonymise
from fincoach.rules import RULES_VERSION, RulePolicy
from fincoach.settings import get_settings, reload_settings
from serving import batch
from serving.batch import BatchScoringError, score_all_users
from serving.decide import allowed_actions
from serving.guardrails import UserContext
from serving.model_loader import LoadedPolicy

GENERATED_AT = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
N_USERS = 300


@pytest.fixture()
def no_champion():
    """A model name nothing is registered under, so this test never sees another test's champion."""
    saved = os.environ.get("FINCOACH_MODEL_NAME")
    os.environ["FINCOACH_MODEL_NAME"] = f"test-none-{uuid.uuid4().hex[:8]}"
    reload_settings()
    yield
    if saved is None:
        os.environ.pop("FINCOACH_MODEL_NAME")
    else:
        os.environ["FINCOACH_MODEL_NAME"] = saved
    reload_settings()


@pytest.fixture(scope="module")
def masked_lover(tmp_path_factory) -> LoadedPolicy:
    """An exported Q-network that scores exactly the actions the mask forbids most often highest."""
    net = torch.nn.Linear(N_FEATURES, N_ACTIONS)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.arange(N_ACTIONS, dtype=torch.float32) / 10)
        net.bias[5], net.bias[9], net.bias[7] = 10.0, 9.0, 8.0  # PAY_DEBT_EXTRA, INVEST, SET_GOAL
    folder = write_policy_artifact(tmp_path_factory.mktemp("policy"), torch.jit.script(net),
                                   {"model_version": "test-net/1"})
    return LoadedPolicy(ExportedPolicy.load(folder), "champion", "test-net/1")


def _population(n: int, seed: int = 0) -> list[dict]:
    """Feature rows of n users: a third without debt, a third with costly debt, goals for half of them."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        debt = 0.0 if i % 3 == 0 else float(rng.uniform(500, 20_000))
        apr = 0.0 if debt == 0 else (float(rng.uniform(0.15, 0.3)) if i % 3 == 1 else float(rng.uniform(0.02, 0.09)))
        f = {name: float(rng.uniform(0, 1)) for name in FEATURE_NAMES}
        f.update(
            monthly_income=float(rng.uniform(1_000, 9_000)), monthly_spend=float(rng.uniform(500, 6_000)),
            savings_rate=float(rng.uniform(-0.3, 0.4)), checking_balance=float(rng.uniform(0, 5_000)),
            savings_balance=float(rng.uniform(0, 30_000)), emergency_fund_months=float(rng.uniform(0, 8)),
            debt_total=debt, debt_to_income=debt / 50_000, max_debt_apr=apr,
            has_active_goal=float(i % 2), sessions_30d=float(rng.integers(0, 40)),
            days_since_last_session=float(rng.integers(0, 30)), age=float(rng.integers(18, 80)),
        )
        rows.append({"user_id": i + 1, **f})
    return rows


def _insert(engine: sa.Engine, rows: list[dict], spec_version: str = FEATURE_SPEC_VERSION,
            with_app_user: bool = True) -> None:
    """The users' app rows (the interaction log's foreign key needs them) and their latest features."""
    names = ", ".join(FEATURE_NAMES)
    binds = ", ".join(f":{n}" for n in FEATURE_NAMES)
    with engine.begin() as conn:
        if with_app_user:
            conn.execute(
                sa.text(
                    "insert into app.users (user_id, created_at, birth_year, income_band, pay_frequency, "
                    "monthly_income, region, device_type, risk_tolerance) values (:user_id, '2025-01-01', "
                    "1990, 'middle', 'monthly', :monthly_income, 'north', 'ios', 'medium')"
                ),
                [{"user_id": r["user_id"], "monthly_income": r["monthly_income"]} for r in rows],
            )
        conn.execute(
            sa.text(
                f"insert into features.user_features_latest (user_id, as_of, feature_spec_version, {names}) "
                f"values (:user_id, '2026-03-01', :v, {binds})"
            ),
            [{**r, "v": spec_version} for r in rows],
        )


def _table(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            f"select {batch.COLUMNS} from serving.recommendations order by user_id, rank")).mappings()]


def _interactions(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "select request_id, user_id, action_id, action_type, propensity, model_version, source, served_at "
            "from app.coaching_interactions order by user_id")).mappings()]


def test_every_user_gets_k_ranked_allowed_recommendations(clean_db, masked_lover):
    rows = _population(N_USERS)
    _insert(clean_db, rows)
    s = get_settings()
    k, eps = s.recommendations_per_user, s.serving_epsilon

    result = score_all_users("run-1", GENERATED_AT, loaded=masked_lover)

    table = _table(clean_db)
    assert result["users"] == N_USERS and result["rows"] == N_USERS * k == len(table)
    assert result["unscored_users"] == 0 and result["source"] == "champion"
    raw = np.array([[r[n] for n in FEATURE_NAMES] for r in rows])
    mask, _ = allowed_actions(raw, UserContext.none(len(raw)))
    q = masked_lover.policy.action_scores(raw)
    by_user: dict[int, list[dict]] = {}
    for rec in table:
        by_user.setdefault(rec["user_id"], []).append(rec)
    assert len(by_user) == N_USERS
    for uid, recs in by_user.items():
        allowed = mask[uid - 1]
        n_valid = allowed.sum()
        assert [r["rank"] for r in recs] == list(range(1, k + 1))
        ids = [r["action_id"] for r in recs]
        assert len(set(ids)) == k and all(allowed[a] for a in ids)
        assert all(np.isfinite(r["score"]) and 0 < r["propensity"] <= 1 for r in recs)
        assert recs[1]["score"] >= recs[2]["score"]  # below the choice, best first
        greedy = np.where(allowed, q[uid - 1], -np.inf).argmax()
        for r in recs:
            expected = 1 - eps + eps / n_valid if r["action_id"] == greedy else eps / n_valid
            assert r["propensity"] == pytest.approx(expected)
        first = recs[0]
        assert first["action_text"] == action_text(first["action_id"])
        assert first["expires_at"] - first["generated_at"] == timedelta(hours=s.recommendation_ttl_hours)
        assert first["model_version"] == "test-net/1" and first["run_id"] == "run-1"
    # the network loves the masked actions: they appear exactly where the mask allows them
    debt = raw[:, feature_index("debt_total")]
    costly = (debt > 0) & (raw[:, feature_index("max_debt_apr")] >= 0.10)
    assert not any(r["action_id"] == 5 for r in table if debt[r["user_id"] - 1] == 0)
    assert not any(r["action_id"] == 9 for r in table if costly[r["user_id"] - 1])
    assert any(r["action_id"] == 5 for r in table) and any(r["action_id"] == 9 for r in table)
    assert table[0]["parameters"].keys() == {"amount", "category", "urgency"}
    assert all(r["explanation"] and r["family"] for r in table)


def test_rank_one_is_logged_as_served_and_a_rerun_changes_nothing(clean_db, masked_lover):
    _insert(clean_db, _population(N_USERS))

    first = score_all_users("run-2", GENERATED_AT, loaded=masked_lover)
    table, log = _table(clean_db), _interactions(clean_db)
    again = score_all_users("run-2", GENERATED_AT, loaded=masked_lover)

    assert _table(clean_db) == table
    assert _interactions(clean_db) == log
    assert first["interactions_logged"] == N_USERS and again["interactions_logged"] == 0
    rank1 = {r["user_id"]: r for r in table if r["rank"] == 1}
    assert len(log) == N_USERS
    for entry in log:
        rec = rank1[entry["user_id"]]
        assert entry["request_id"] == f"batch:run-2:{entry['user_id']}"
        assert (entry["action_id"], entry["propensity"], entry["model_version"]) == (
            rec["action_id"], rec["propensity"], rec["model_version"])
        assert entry["source"] == "batch" and entry["served_at"] == GENERATED_AT
    # with exploration on, some users were served an action other than the greedy one, reproducibly
    assert any(r["propensity"] < 0.5 for r in rank1.values())


def test_the_lake_holds_the_same_rows_as_the_table(clean_db, masked_lover):
    _insert(clean_db, _population(50))

    result = score_all_users("run-3", GENERATED_AT, loaded=masked_lover)

    partition = f"recommendations/dt={GENERATED_AT:%Y-%m-%d}"
    assert lake.list_files(partition) == ["run-3.parquet"]
    assert result["path"] == lake.uri(f"{partition}/run-3.parquet")
    parquet = lake.read_table(f"{partition}/run-3.parquet")
    assert parquet.schema == batch.LAKE_SCHEMA
    expected = [{"user_pseudonym": pseudonymise(r.pop("user_id")), **r} for r in _table(clean_db)]
    assert parquet.to_pylist() == expected


def test_without_a_champion_the_rules_answer_and_the_result_says_why(clean_db, no_champion):
    _insert(clean_db, _population(30))

    result = score_all_users("run-4", GENERATED_AT)

    assert result["source"] == "rules" and result["model_version"] == RULES_VERSION
    assert "could not be loaded" in result["fallback_reason"]
    assert {r["model_version"] for r in _table(clean_db)} == {RULES_VERSION}
    assert json.dumps(result)  # a plain document: it goes to ops.run_log and XCom


def test_users_that_cannot_be_scored_are_counted_not_dropped_silently(clean_db):
    _insert(clean_db, _population(40))
    stale = [{**r, "user_id": 1000 + r["user_id"]} for r in _population(5, seed=1)]
    _insert(clean_db, stale, spec_version="v0-old")
    orphans = [{**r, "user_id": 2000 + r["user_id"]} for r in _population(3, seed=2)]
    _insert(clean_db, orphans, with_app_user=False)

    class NaNForOldUsers(Policy):
        version = "nan/1"

        def action_scores(self, raw):
            scores = np.zeros((len(raw), N_ACTIONS))
            scores[raw[:, feature_index("age")] >= 70] = np.nan
            return scores

    result = score_all_users("run-5", GENERATED_AT, loaded=LoadedPolicy(NaNForOldUsers(), "champion", "nan/1"))

    old = sum(r["age"] >= 70 for r in _population(40))
    assert old > 0
    assert result["unscored"] == {"feature_spec_mismatch": 5, "not_in_app_users": 3, "non_finite_scores": old}
    assert result["users_read"] == 48 and result["users"] == 40 - old
    assert {r["user_id"] for r in _table(clean_db)} == {r["user_id"] for r in _population(40) if r["age"] < 70}


def test_a_new_run_replaces_the_whole_previous_set(clean_db, masked_lover):
    _insert(clean_db, _population(60))
    score_all_users("run-6a", GENERATED_AT, loaded=masked_lover)
    with clean_db.begin() as conn:
        conn.execute(sa.text("delete from features.user_features_latest where user_id > 40"))

    score_all_users("run-6b", GENERATED_AT + timedelta(hours=1), loaded=masked_lover)

    table = _table(clean_db)
    assert {r["run_id"] for r in table} == {"run-6b"}
    assert {r["user_id"] for r in table} == set(range(1, 41))


def test_a_failure_midway_leaves_the_previous_set_in_place(clean_db, masked_lover, monkeypatch):
    _insert(clean_db, _population(120))
    score_all_users("run-7a", GENERATED_AT, loaded=masked_lover)
    before, log_before = _table(clean_db), _interactions(clean_db)

    class FailsOnSecondChunk(Policy):
        calls = 0

        def action_scores(self, raw):
            FailsOnSecondChunk.calls += 1
            if FailsOnSecondChunk.calls == 2:
                raise RuntimeError("model crashed")
            return np.zeros((len(raw), N_ACTIONS))

    monkeypatch.setattr(batch, "CHUNK_ROWS", 50)
    with pytest.raises(RuntimeError, match="model crashed"):
        score_all_users("run-7b", GENERATED_AT, loaded=LoadedPolicy(FailsOnSecondChunk(), "champion", "x/1"))

    assert _table(clean_db) == before
    assert _interactions(clean_db) == log_before
    assert lake.list_files(f"recommendations/dt={GENERATED_AT:%Y-%m-%d}") == ["run-7a.parquet"]


def test_when_no_user_can_be_scored_the_previous_set_stays(clean_db, masked_lover):
    _insert(clean_db, _population(20))
    score_all_users("run-8a", GENERATED_AT, loaded=masked_lover)
    before = _table(clean_db)
    with clean_db.begin() as conn:
        conn.execute(sa.text("update features.user_features_latest set feature_spec_version = 'v0-old'"))

    with pytest.raises(BatchScoringError, match="none of the 20 users"):
        score_all_users("run-8b", GENERATED_AT, loaded=masked_lover)

    assert _table(clean_db) == before


def test_a_user_erased_while_the_run_scores_is_left_out_of_the_log_without_failing_it(clean_db, masked_lover):
    _insert(clean_db, _population(40))

    class ErasesUserOne(Policy):
        version = "erases/1"

        def action_scores(self, raw):  # after the users were read, before the log is written
            with clean_db.begin() as conn:
                conn.execute(sa.text("delete from app.users where user_id = 1"))
            return masked_lover.policy.action_scores(raw)

    result = score_all_users("run-9", GENERATED_AT, loaded=LoadedPolicy(ErasesUserOne(), "champion", "erases/1"))

    assert result["users"] == 39 and result["interactions_logged"] == 39
    assert result["unscored"] == {"erased_during_run": 1}
    assert {r["user_id"] for r in _interactions(clean_db)} == set(range(2, 41))
    with clean_db.connect() as conn:  # nothing of the erased user is swapped in, nor written to the lake
        assert conn.execute(sa.text("select count(*) from serving.recommendations where user_id = 1")).scalar() == 0
        assert conn.execute(sa.text("select count(distinct user_id) from serving.recommendations")).scalar() == 39
    lake_rows = lake.read_table(f"recommendations/dt={GENERATED_AT:%Y-%m-%d}/run-9.parquet")
    assert pseudonymise(1) not in set(lake_rows.column("user_pseudonym").to_pylist())
    assert lake_rows.num_rows == result["rows"]


def test_two_runs_at_once_take_turns_and_readers_only_ever_see_one_whole_set(clean_db, masked_lover):
    import threading

    _insert(clean_db, _population(N_USERS))
    k = get_settings().recommendations_per_user
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def read() -> None:
        with clean_db.connect() as conn:
            while not done.is_set():
                seen.append(tuple(conn.execute(sa.text(
                    "select count(*), count(distinct run_id) from serving.recommendations")).one()))
                conn.commit()

    reader = threading.Thread(target=read)
    reader.start()
    runs = [threading.Thread(target=score_all_users, args=(f"run-c{i}", GENERATED_AT + timedelta(hours=i)),
                             kwargs={"loaded": masked_lover}) for i in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    done.set()
    reader.join()

    assert set(seen) <= {(0, 0), (N_USERS * k, 1)} and (N_USERS * k, 1) in seen
    assert len({r["run_id"] for r in _table(clean_db)}) == 1 and len(_table(clean_db)) == N_USERS * k
    assert len(_interactions(clean_db)) == 2 * N_USERS  # both runs logged, neither lost the other's rows


def test_the_swapped_in_table_keeps_the_grants_and_refuses_an_index_it_would_lose(clean_db, masked_lover):
    _insert(clean_db, _population(20))
    with clean_db.begin() as conn:
        conn.execute(sa.text("grant select on serving.recommendations to public"))
    try:
        score_all_users("run-10a", GENERATED_AT, loaded=masked_lover)
        with clean_db.begin() as conn:
            assert conn.execute(sa.text("select has_table_privilege('public', 'serving.recommendations', 'select')"
                                        )).scalar_one()
            conn.execute(sa.text("create index recommendations_by_score on serving.recommendations (score)"))
        before = _table(clean_db)

        with pytest.raises(BatchScoringError, match="index or trigger"):
            score_all_users("run-10b", GENERATED_AT, loaded=masked_lover)

        assert _table(clean_db) == before
    finally:
        with clean_db.begin() as conn:
            conn.execute(sa.text("drop index if exists serving.recommendations_by_score"))
            conn.execute(sa.text("revoke select on serving.recommendations from public"))


def test_a_swap_blocked_by_a_long_reader_gives_up_and_leaves_the_previous_set(clean_db, masked_lover, monkeypatch):
    import threading
    import time

    _insert(clean_db, _population(20))
    score_all_users("run-11a", GENERATED_AT, loaded=masked_lover)
    before = _table(clean_db)
    monkeypatch.setenv("FINCOACH_RECOMMENDATIONS_SWAP_WAIT_SECONDS", "3")
    reload_settings()
    errors: list[Exception] = []

    def run() -> None:
        try:
            score_all_users("run-11b", GENERATED_AT, loaded=masked_lover)
        except BatchScoringError as exc:
            errors.append(exc)

    slowest = 0.0
    try:
        with clean_db.connect() as long_reader, clean_db.connect() as reader:
            long_reader.execute(sa.text("select count(*) from serving.recommendations"))  # holds it, never ends
            swap = threading.Thread(target=run)
            swap.start()
            while swap.is_alive():  # other readers are held up by one short try at a time, never by the wait
                started = time.perf_counter()
                reader.execute(sa.text("select count(*) from serving.recommendations"))
                reader.commit()
                slowest = max(slowest, time.perf_counter() - started)
            swap.join()
    finally:
        monkeypatch.undo()
        reload_settings()

    assert len(errors) == 1 and "stayed in use" in str(errors[0])
    assert slowest < 2
    assert _table(clean_db) == before


def test_a_run_id_that_cannot_name_a_lake_file_is_refused(engine):
    with pytest.raises(ValueError, match="run_id"):
        score_all_users("../escape", GENERATED_AT)


# --- guardrails, planners, explanations, the lake on S3 -------------------------------------------------------


def _serve_nudges(engine: sa.Engine, user_id: int, count: int, served_at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into app.coaching_interactions (request_id, user_id, action_id, action_type, propensity, "
            "model_version, source, served_at) values (:r, :u, 1, 'SAVE_MORE', 0.5, 'x/1', 'online', :t)"),
            [{"r": f"old-{user_id}-{i}", "u": user_id, "t": served_at} for i in range(count)])


def test_opted_out_and_capped_users_get_no_action_only_and_a_rerun_counts_the_same(clean_db, masked_lover):
    _insert(clean_db, _population(12))
    with clean_db.begin() as conn:
        conn.execute(sa.text("insert into app.coaching_opt_outs (user_id, reason) values (1, 'asked')"))
    cap = get_settings().nudge_cap
    _serve_nudges(clean_db, 2, cap, GENERATED_AT - timedelta(hours=1))  # at the cap
    _serve_nudges(clean_db, 3, cap - 1, GENERATED_AT - timedelta(hours=2))  # one below
    _serve_nudges(clean_db, 4, cap, GENERATED_AT - timedelta(days=30))  # outside the window

    score_all_users("run-g", GENERATED_AT, loaded=masked_lover)
    first = _table(clean_db)
    score_all_users("run-g", GENERATED_AT, loaded=masked_lover)

    by_user = {u: [r for r in first if r["user_id"] == u] for u in range(1, 13)}
    for silenced in (1, 2):
        assert [(r["action_type"], r["propensity"]) for r in by_user[silenced]] == [("NO_ACTION", 1.0)]
    k = get_settings().recommendations_per_user
    assert len(by_user[3]) == k and len(by_user[4]) == k
    assert _table(clean_db) == first


def test_no_investment_with_costly_debt_or_no_fund_and_no_saving_beyond_disposable_income(clean_db, masked_lover):
    rows = _population(N_USERS, seed=3)
    _insert(clean_db, rows)

    score_all_users("run-h", GENERATED_AT, loaded=masked_lover)

    features = {r["user_id"]: r for r in rows}
    money = {"SAVE_MORE", "BUILD_EMERGENCY_FUND", "INVEST", "PAY_DEBT_EXTRA"}
    table = _table(clean_db)
    for rec in table:
        f = features[rec["user_id"]]
        if rec["action_type"] == "INVEST":
            assert f["emergency_fund_months"] >= 1 and not (f["debt_total"] > 0 and f["max_debt_apr"] >= 0.15)
        if rec["action_type"] in money:
            assert rec["parameters"]["amount"] <= max(f["monthly_income"] - f["monthly_spend"], 0)
    poor = [r for r in table if features[r["user_id"]]["monthly_income"] < features[r["user_id"]]["monthly_spend"]]
    assert poor and not any(r["action_type"] in money for r in poor)


def test_a_registered_planner_sets_the_amounts_and_the_guardrails_check_them(clean_db, masked_lover):
    from serving import families

    rows = _population(60, seed=4)
    _insert(clean_db, rows)
    families.register_planner("coaching_nudge", lambda raw, action: raw[:, feature_index("monthly_income")] * 2)
    try:
        score_all_users("run-p", GENERATED_AT, loaded=masked_lover)
    finally:
        families.reset_planners()

    table = _table(clean_db)
    # twice the income is always more than the disposable income: no money-moving nudge survives
    assert not any(r["action_type"] in {"SAVE_MORE", "PAY_DEBT_EXTRA", "BUILD_EMERGENCY_FUND"} for r in table)
    assert table and all(r["family"] == "none" for r in table if r["action_type"] == "NO_ACTION")


def test_explanations_quote_the_features_that_drove_the_recommendation(clean_db):
    row = _population(1)[0] | {"debt_total": 4000.0, "max_debt_apr": 0.22, "monthly_income": 5000.0,
                                "monthly_spend": 2000.0}
    _insert(clean_db, [row])

    score_all_users("run-e", GENERATED_AT, loaded=LoadedPolicy(RulePolicy(), "rules", RULES_VERSION))

    first = _table(clean_db)[0]
    assert first["action_type"] == "PAY_DEBT_EXTRA"
    assert first["explanation"] == "Your costliest debt charges 22% a year on 4000 outstanding."


@pytest.fixture()
def s3_lake(monkeypatch):
    """The lake on a local S3 API (moto in server mode, over HTTP on loopback)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"FINCOACH_LAKE_URI": "s3://fincoach-lake/prod", "AWS_ENDPOINT_URL": endpoint,
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reload_settings()
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="fincoach-lake")
    yield boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    monkeypatch.undo()
    reload_settings()
    server.stop()


def test_the_recommendations_reach_a_lake_on_s3_with_pseudonyms(clean_db, masked_lover, s3_lake):
    _insert(clean_db, _population(20))

    result = score_all_users("run-s3", GENERATED_AT, loaded=masked_lover)
    score_all_users("run-s3b", GENERATED_AT, loaded=masked_lover)  # the rerun of the day replaces the file

    keys = [o["Key"] for o in s3_lake.list_objects_v2(Bucket="fincoach-lake")["Contents"]
            if not o["Key"].endswith("/")]  # pyarrow leaves folder markers
    assert keys == [f"prod/recommendations/dt={GENERATED_AT:%Y-%m-%d}/run-s3b.parquet"]
    assert result["path"].startswith("s3://fincoach-lake/prod/recommendations/")
    parquet = lake.read_table(f"recommendations/dt={GENERATED_AT:%Y-%m-%d}/run-s3b.parquet")
    assert parquet.num_rows == len(_table(clean_db))
    assert set(parquet.column("user_pseudonym").to_pylist()) == {pseudonymise(u) for u in range(1, 21)}
