"""The training stage for real: RLlib DQN on a local Ray, MLflow on the fixture's Postgres, the gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import torch
from torch import nn

from fincoach import lake
from fincoach.actions import N_ACTIONS, NO_ACTION, action_mask
from fincoach.feature_spec import FEATURE_NAMES, normalise, raw_matrix
from fincoach.policy import ExportedPolicy, write_policy_artifact
from fincoach.policy_model import load_registered_policy
from fincoach.rules import RulePolicy
from fincoach.settings import get_settings, reload_settings
from fincoach.tracking import configure_mlflow
from training import registry, workflow
from training.dqn import DQNArgs, build_config, train_dqn
from training.env import CoachingEnv
from training.export import check_batch, export_policy, extract_q_network, rlmodule_q_values
from training.sample_users import sample_snapshot
from training.vector_env import make_rllib_env_config, rllib_env_creator


@pytest.fixture(scope="module")
def snapshot_uri(platform_env):
    """A feature snapshot of 400 plausible users published in the lake like the pipelines publish it."""
    import pyarrow as pa

    return lake.write_parquet(
        pa.Table.from_pandas(sample_snapshot(400, 21)), "features/as_of=test/features.parquet"
    )


@pytest.fixture()
def small_budget(monkeypatch):
    """A tiny training budget, the evaluation size, and a registered model of this test's own."""
    monkeypatch.setenv("FINCOACH_TRAIN_TIMESTEPS", "2000")
    monkeypatch.setenv("FINCOACH_EVAL_USERS", "300")
    monkeypatch.setenv("FINCOACH_ORACLE_DRAWS", "2")
    monkeypatch.setenv("FINCOACH_BANDIT_EPISODES", "4")
    monkeypatch.setenv("FINCOACH_MODEL_NAME", f"test-training-{uuid.uuid4().hex[:8]}")
    reload_settings()
    yield get_settings()
    monkeypatch.undo()
    reload_settings()


class FixedChoice(nn.Module):
    """A policy network that always prefers one action (a hand-made candidate)."""

    def __init__(self, action: int):
        super().__init__()
        self.action = action
        self.n_actions = N_ACTIONS

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        q = torch.zeros(obs.shape[0], self.n_actions)
        q[:, self.action] = 1.0
        return q


def _gate_passes(registered: dict, settings) -> bool:
    low = registered["candidate"]["ci_low"]
    champ = registered["champion"]["mean_reward"] if registered["champion"] else None
    regress = any(
        not row["small"] and row["diff_mean"] < -settings.gate_segment_tolerance
        for rows in registered["segments_vs_current"].values()
        for row in rows.values()
    )
    return low > registered["rules"]["mean_reward"] and (champ is None or low > champ) and not regress


def _through_the_workflow(train_result: dict) -> tuple[dict, dict]:
    registered = workflow.register_candidate(workflow.evaluate_candidate(train_result))
    return registered, workflow.promote_if_better(registered)


def _log_fixed(tmp_path, action: int, run_id: str, uri: str) -> dict:
    folder = write_policy_artifact(
        tmp_path / run_id, torch.jit.script(FixedChoice(action)), {"run_id": run_id}
    )
    example = workflow.read_snapshot(uri)[list(FEATURE_NAMES)].head(3).astype("float64")
    return workflow.log_candidate(folder, run_id, uri, example)


@pytest.mark.parametrize("dueling", [True, False])
def test_exported_q_network_equals_the_rlmodule(tmp_path, dueling):
    users = sample_snapshot(50, 1)
    config = build_config(users, DQNArgs()).training(dueling=dueling)
    module = config.get_rl_module_spec(env=CoachingEnv(users=users), inference_only=True).build()
    obs = check_batch(128)
    np.testing.assert_allclose(
        extract_q_network(module)(torch.from_numpy(obs)).detach().numpy(),
        rlmodule_q_values(module, obs),
        atol=1e-6,
    )
    policy = ExportedPolicy.load(export_policy(module, tmp_path / "p", {"run_id": "unit"}))
    raw = raw_matrix(users)
    np.testing.assert_allclose(
        policy.action_scores(raw), rlmodule_q_values(module, normalise(raw)), atol=1e-5
    )
    assert policy.meta["dueling"] is dueling


@pytest.mark.slow
def test_full_workflow_trains_registers_and_gates_honestly(engine, snapshot_uri, small_budget, tmp_path):
    trained = workflow.train_candidate(snapshot_uri, "test-train-1")
    assert set(trained) >= {
        "mlflow_run_id",
        "model_uri",
        "features_uri",
        "env_steps",
        "env_steps_per_s",
        "train_seconds",
    }
    assert trained["env_steps"] >= 2000 and trained["env_steps_per_s"] > 0
    assert trained["simulator_params"] == "default (no calibration stored for this run)"
    json.dumps(trained)

    registered, gate = _through_the_workflow(trained)
    json.dumps(registered), json.dumps(gate)
    name = small_budget.model_name
    client = mlflow.MlflowClient()
    version = client.get_model_version(name, gate["version"])
    assert client.get_model_version_by_alias(name, "challenger").version == version.version
    assert version.tags["fincoach.mlflow_run_id"] == trained["mlflow_run_id"]

    # The decision follows the numbers, and is logged on the run and the version.
    cand, rules = registered["candidate"]["mean_reward"], registered["rules"]["mean_reward"]
    low = registered["candidate"]["ci_low"]
    assert low <= cand <= registered["candidate"]["ci_high"]
    assert gate["decision"] == ("promoted" if _gate_passes(registered, small_budget) else "kept_challenger")
    assert set(registered["baselines"]) == {"random", "linucb", "thompson"}
    assert registered["effect_vs_rules"]["diff_mean"] == pytest.approx(cand - rules)
    assert set(registered["heldout_archetypes"]) == {"spender"}
    for who in ("candidate", "rules", "random"):
        assert set(registered["ope"][who]) >= {"truth", "ips", "snips", "dm", "dr"}
    run = client.get_run(trained["mlflow_run_id"])
    assert run.info.run_name == "test-train-1"
    assert run.data.tags["gate.decision"] == gate["decision"]
    assert run.data.tags["gate.reason"] == gate["reason"] and f"{cand:.4f}" in gate["reason"]
    assert client.get_model_version(name, gate["version"]).tags["gate.decision"] == gate["decision"]
    assert run.data.metrics["eval/candidate_mean_reward"] == pytest.approx(cand)
    assert run.data.metrics["eval/rules_mean_reward"] == pytest.approx(rules)
    assert run.data.metrics["eval/candidate_ci_low"] == pytest.approx(low)
    assert "ope/candidate_dr_abs_error" in run.data.metrics and "eval/linucb_mean_reward" in run.data.metrics
    plots = {a.path for a in client.list_artifacts(trained["mlflow_run_id"], "plots")}
    assert plots == {"plots/policies_ci.png", "plots/segments.png", "plots/curves.png", "plots/ope.png"}
    tables = {a.path for a in client.list_artifacts(trained["mlflow_run_id"], "tables")}
    assert {"tables/policies.csv", "tables/segments.csv", "tables/ope.csv"} <= tables
    png = mlflow.artifacts.download_artifacts(
        run_id=trained["mlflow_run_id"], artifact_path="plots/policies_ci.png", dst_path=str(tmp_path / "png")
    )
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "train/episode_return_mean" in run.data.metrics and "train/env_steps_per_s" in run.data.metrics
    assert run.data.params["feature_spec_version"] and run.data.params["features_uri"] == snapshot_uri
    artifacts = {a.path for a in client.list_artifacts(trained["mlflow_run_id"], "contract")}
    assert artifacts == {"contract/feature_spec.json", "contract/action_catalog.json"}

    # A retried registration makes no second version.
    assert workflow.register_candidate(registered)["version"] == registered["version"]

    # What will be served loads without Ray, and its choices respect the mask.
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=trained["model_uri"], dst_path=str(tmp_path / "served")
    )
    users = workflow.read_snapshot(snapshot_uri)[list(FEATURE_NAMES)].head(100)
    users.to_parquet(tmp_path / "users.parquet")
    script = textwrap.dedent(f"""
        import sys
        import pandas as pd
        from fincoach.actions import action_mask
        from fincoach.feature_spec import raw_matrix
        from fincoach.policy import ExportedPolicy
        policy = ExportedPolicy.load({str(local)!r})
        raw = raw_matrix(pd.read_parquet({str(tmp_path / "users.parquet")!r}))
        actions = policy.act(raw).actions
        assert action_mask(raw)[range(len(raw)), actions].all()
        assert not any(m == "ray" or m.startswith("ray.") for m in sys.modules), "the policy needed Ray"
        print("ok", len(actions))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok 100")


@pytest.mark.slow
def test_a_worse_candidate_is_never_promoted_and_rollback_restores_the_previous_champion(
    engine, snapshot_uri, small_budget, tmp_path, monkeypatch
):
    configure_mlflow()
    name = small_budget.model_name
    client = mlflow.MlflowClient()
    # A reasonable hand-made policy: always suggest cutting dining (it beats the rules on average in this
    # simulator, not in every segment: the segment check is exercised by the silent candidate below).
    monkeypatch.setenv("FINCOACH_GATE_SEGMENT_TOLERANCE", "10")
    small_budget = reload_settings()
    good_reg, good = _through_the_workflow(_log_fixed(tmp_path, 3, "test-fixed-reduce", snapshot_uri))
    assert good["decision"] == ("promoted" if _gate_passes(good_reg, small_budget) else "kept_challenger")
    assert good["decision"] == "promoted", good["reason"]
    monkeypatch.delenv("FINCOACH_GATE_SEGMENT_TOLERANCE")
    small_budget = reload_settings()
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == good["version"]
    assert registry.history(client, name) == [good["version"]]
    champion_policy = load_registered_policy(f"models:/{name}@champion")
    assert champion_policy.version == f"{name}/{champion.version}"

    # Never coaching anyone: worse than a champion that beat the rules, on every count.
    registered, gate = _through_the_workflow(
        _log_fixed(tmp_path, NO_ACTION, "test-fixed-silent", snapshot_uri)
    )
    assert registered["champion_version"] == str(champion.version)
    assert gate["candidate_mean_reward"] == 0.0 < gate["champion_mean_reward"]
    assert gate["decision"] == "kept_challenger"
    assert "<= champion" in gate["reason"] and "<= rules" in gate["reason"]
    assert "segments regressing" in gate["reason"]
    assert client.get_model_version_by_alias(name, "champion").version == champion.version
    assert str(client.get_model_version_by_alias(name, "challenger").version) == gate["version"]
    run = client.get_run(registered["mlflow_run_id"])
    assert run.data.tags["gate.decision"] == "kept_challenger"
    assert client.get_model_version(name, gate["version"]).tags["gate.reason"] == gate["reason"]

    # The kept champion still serves valid actions for every user.
    raw = raw_matrix(workflow.read_snapshot(snapshot_uri))
    actions = champion_policy.act(raw).actions
    assert action_mask(raw)[np.arange(len(raw)), actions].all()
    assert (actions < N_ACTIONS).all()

    # Humans: the CLI refuses to promote a version that failed the gate unless forced; rollback undoes it.
    env = {**os.environ, "FINCOACH_MODEL_NAME": name}
    cli = [sys.executable, "-m", "fincoach.cli", "model"]
    refused = subprocess.run([*cli, "promote", gate["version"]], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "failed the gate" in refused.stdout
    forced = subprocess.run(
        [*cli, "promote", gate["version"], "--force", "--reason", "test"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert str(client.get_model_version_by_alias(name, "champion").version) == gate["version"]
    assert client.get_model_version(name, gate["version"]).tags["champion.by"] == "human"
    back = subprocess.run([*cli, "rollback"], capture_output=True, text=True, env=env)
    assert back.returncode == 0, back.stdout + back.stderr
    assert client.get_model_version_by_alias(name, "champion").version == champion.version
    assert registry.history(client, name) == [good["version"]]
    status = subprocess.run([*cli, "status"], capture_output=True, text=True, env=env)
    assert status.returncode == 0 and f"champion {champion.version}" in status.stdout
    again = subprocess.run([*cli, "rollback"], capture_output=True, text=True, env=env)
    assert again.returncode == 1 and "first champion" in again.stdout


def test_masked_actions_are_never_chosen_while_exploring(tmp_path):
    users = sample_snapshot(50, 2)
    config = build_config(users, DQNArgs(epsilon_initial=1.0))
    env = rllib_env_creator(make_rllib_env_config(users, action_masking=True))  # one env: the module's spaces
    module = config.get_rl_module_spec(env=env).build()
    obs, masks = [], []
    for i in range(50):
        o, info = env.reset(seed=i, options={"user_index": i})
        obs.append(o["observations"])
        masks.append(o["action_mask"])
        np.testing.assert_array_equal(o["action_mask"], info["action_mask"])
    batch = {
        "obs": {"observations": torch.tensor(np.array(obs)), "action_mask": torch.tensor(np.array(masks))}
    }
    allowed = np.array(masks) > 0.5
    assert not allowed.all()  # some actions are masked for these users
    with torch.no_grad():
        for _ in range(20):  # epsilon is 1 at t=0: every action is a random draw
            actions = module.forward_exploration(batch, t=0)["actions"].numpy()
            assert allowed[np.arange(50), actions].all()
        greedy = module.forward_inference(batch)["actions"].numpy()
    assert allowed[np.arange(50), greedy].all()


@pytest.mark.slow
def test_a_candidate_starts_from_the_champion_weights(tmp_path):
    users = sample_snapshot(100, 3)
    module, _ = train_dqn(users, DQNArgs(total_timesteps=256, num_steps_sampled_before_learning_starts=500))
    state = {k: v.clone() for k, v in extract_q_network(module).state_dict().items()}
    fresh, _ = train_dqn(
        users, DQNArgs(total_timesteps=1, seed=99, num_steps_sampled_before_learning_starts=10**6)
    )
    warm, _ = train_dqn(
        users,
        DQNArgs(total_timesteps=1, seed=99, num_steps_sampled_before_learning_starts=10**6),
        init_state=state,
    )
    got = extract_q_network(warm).state_dict()
    assert all(torch.equal(state[k], got[k]) for k in state)
    assert not all(torch.equal(state[k], v) for k, v in extract_q_network(fresh).state_dict().items())


@pytest.mark.slow
def test_the_training_dag_continues_from_the_champion(engine, snapshot_uri, small_budget):
    configure_mlflow()
    first = workflow.train_candidate(snapshot_uri, "test-continue-1")
    assert (
        mlflow.MlflowClient().get_run(first["mlflow_run_id"]).data.params["init_from"].startswith("scratch")
    )
    registered = workflow.register_candidate(workflow.evaluate_candidate(first))
    registry.make_champion(registered["version"], by="test", reason="seed a DQN champion")
    second = workflow.train_candidate(snapshot_uri, "test-continue-2")
    params = mlflow.MlflowClient().get_run(second["mlflow_run_id"]).data.params
    assert params["init_from"] == f"champion {registered['version']}"


def _log_interactions(engine, snapshot: pd.DataFrame, per_user: int) -> int:
    """Users of the snapshot in app.users, and rules-with-exploration interactions logged for them."""
    import pandas as pd

    rng = np.random.default_rng(0)
    decision = RulePolicy().act(raw_matrix(snapshot), epsilon=0.3, rng=rng)
    with engine.begin() as conn:
        conn.execute(sa.text("truncate app.users restart identity cascade"))
        conn.execute(
            sa.text(
                "insert into app.users (user_id, created_at, birth_year, income_band, pay_frequency, "
                "monthly_income, region, device_type, risk_tolerance) values "
                "(:u, now(), 1990, 'middle', 'monthly', 3000, 'north', 'ios', 'medium')"
            ),
            [{"u": int(u)} for u in snapshot["user_id"]],
        )
        rows = [
            {
                "r": f"req-{u}-{k}",
                "u": int(u),
                "a": int(a),
                "t": "x",
                "p": float(p),
                "resp": "accepted" if rng.random() < 0.5 else "ignored",
                "at": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=7 * k),
            }
            for u, a, p in zip(snapshot["user_id"], decision.actions, decision.propensities, strict=True)
            for k in range(per_user)
        ]
        conn.execute(
            sa.text(
                "insert into app.coaching_interactions (request_id, user_id, action_id, action_type, propensity, "
                "model_version, source, served_at, response) values (:r, :u, :a, :t, :p, 'rules-v1', 'batch', :at, :resp)"
            ),
            rows,
        )
    return len(rows)


@pytest.mark.slow
def test_without_a_champion_the_candidate_is_pretrained_offline_on_the_logs(
    engine, snapshot_uri, small_budget
):
    from training.offline import OfflineArgs, bc_to_q_state, offline_rows, pretrain_bc, read_interactions

    snapshot = workflow.read_snapshot(snapshot_uri)
    logged = _log_interactions(engine, snapshot, 3)
    interactions = read_interactions(engine)
    rows, counts = offline_rows(interactions, snapshot.head(300), accepted_only=True)
    assert counts["logged"] == logged
    assert counts["used"] + counts["rejected_user_not_in_snapshot"] + counts["skipped_not_accepted"] == logged
    assert counts["rejected_user_not_in_snapshot"] == 3 * 100

    # BC through RLlib's offline data path learns the logged choices; its weights seed a Q-network.
    module, metrics = pretrain_bc(rows, OfflineArgs())
    assert metrics["policy_loss"][-1] < metrics["policy_loss"][0]
    net = _q_network_from(bc_to_q_state(module))
    obs = torch.from_numpy(np.stack(rows["obs"].to_numpy()))
    agree = (net(obs).argmax(dim=1).numpy() == rows["actions"].to_numpy()).mean()
    assert agree > 0.5, agree  # the logged policy is mostly the deterministic rules

    trained = workflow.train_candidate(snapshot_uri, "test-offline-1")
    params = mlflow.MlflowClient().get_run(trained["mlflow_run_id"]).data.params
    assert params["init_from"].startswith("offline BC on ")
    assert int(params["offline.logged"]) == logged

    # OPE on the served log: the rules' acceptance rate, estimated from a log of the rules with exploration.
    evaluated = workflow.evaluate_candidate(trained)
    served = evaluated["ope_served"]
    assert served["counts"]["used"] == logged
    accepted = interactions["response"].eq("accepted").mean()
    for est in ("ips", "snips", "dm", "dr"):
        assert abs(served["rules"][est]["value"] - accepted) < 0.1, (est, served["rules"][est])
    metrics = mlflow.MlflowClient().get_run(trained["mlflow_run_id"]).data.metrics
    assert metrics["ope_served/used"] == logged and "ope_served/candidate_dr" in metrics


def _q_network_from(state: dict) -> nn.Module:
    """A training.export.QNetwork with the given weights (dueling, 256-128-64 encoder)."""
    from training.export import QNetwork

    sizes = [state[f"encoder.{i}.weight"].shape for i in (0, 2, 4)]
    layers: list[nn.Module] = []
    for out_dim, in_dim in sizes:
        layers += [nn.Linear(in_dim, out_dim), nn.ReLU()]
    net = QNetwork(
        nn.Sequential(*layers), nn.Sequential(nn.Linear(64, N_ACTIONS)), nn.Sequential(nn.Linear(64, 1))
    )
    net.load_state_dict(state)
    return net.eval()
