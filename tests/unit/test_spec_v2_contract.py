"""Merge contract with issue 3: the whole simulator, env and vector env run on spec v2 (FEATURES_V2).

The spec v2 is simulated by appending the v2 features to `fincoach.feature_spec` in a fresh interpreter
before anything else imports it (the only place the spec is patched), then running the env checker, the
vector env and a simulation: every v2 feature with a formula moves with the state, the rest is carried.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.unit.test_sim_features import V2_NAMES

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import fincoach.feature_spec as fs

    v2 = [fs.Feature(name, "v2 contract", "python:test") for name in {names!r}]
    fs.FEATURES = fs.FEATURES + tuple(v2)
    fs.FEATURE_NAMES = tuple(f.name for f in fs.FEATURES)
    fs.N_FEATURES = len(fs.FEATURES)

    from gymnasium.utils.env_checker import check_env
    from fincoach.actions import action_mask
    from fincoach.feature_spec import FEATURE_NAMES, N_FEATURES, raw_matrix
    from training.env import CoachingEnv
    from training.sample_users import sample_snapshot
    from training.sim_features import CARRIED
    from training.simulator import Simulator
    from training.vector_env import VectorCoachingEnv

    assert N_FEATURES == 41, N_FEATURES
    users = sample_snapshot(100, 0)
    check_env(CoachingEnv(users=users, seed=1), skip_render_check=True)
    env = VectorCoachingEnv(users=users, num_envs=32, seed=1)
    obs, info = env.reset(seed=1)
    for _ in range(20):
        obs, reward, *_ = env.step(np.full(32, 2))
    assert obs.shape == (32, 41) and np.isfinite(obs).all() and np.isfinite(reward).all()
    raw = raw_matrix(users)
    sim = Simulator(raw, np.arange(100))
    first = sim.raw_features()
    while not sim.done:
        sim.step(np.random.default_rng(sim.t).integers(0, 18, 100))
    last = sim.raw_features()
    col = {{n: j for j, n in enumerate(FEATURE_NAMES)}}
    for name in CARRIED:
        np.testing.assert_array_equal(last[:, col[name]], raw[:, col[name]])
    moved = [n for n in {names!r} if n not in CARRIED and not np.array_equal(first[:, col[n]], last[:, col[n]])]
    assert len(moved) >= 12, moved
    for name in ("nudges_7d", "days_since_last_nudge", "saving_streak_weeks", "balance_trend", "dining_share"):
        assert name in moved, name
    assert action_mask(last).shape == (100, 18)
    print("spec v2 ok:", len(moved), "v2 features rebuilt")
    """
)


def test_the_simulator_runs_on_spec_v2_and_rebuilds_its_features():
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(names=V2_NAMES)], cwd=root, capture_output=True, text=True,
        timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "spec v2 ok" in out.stdout
