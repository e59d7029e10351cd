"""DQN on the coaching environment with RLlib's new API stack (RLModule, Learner, EnvRunner).

Every RLlib setting we change from its default is a field of `DQNArgs`, so the whole agent is on one
screen; `build_config` is the only place they meet RLlib. Run as a script for a quick look:

    .venv/bin/python -m training.dqn  # trains on a random snapshot, prints the curve and the speed
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fincoach.settings import get_settings
from training.masked_q import MaskedDQNTorchRLModule
from training.simulator import HORIZON
from training.vector_env import with_vector_env

log = logging.getLogger(__name__)


@dataclass
class DQNArgs:
    """Every RLlib DQN setting that differs from RLlib's default (or that the plan fixes), plus budget and seed.

    The agent: a Q-network with hidden layers 256-128-64 (the plan's) feeding dueling value and advantage
    heads, double Q-learning, 3-step returns, a target network, prioritised replay, and action masking
    (training.masked_q). Adam, Huber loss and gradient clipping at 40 are RLlib's defaults. Sampling runs
    in the driver process (num_env_runners=0: fastest for a cheap env on a few CPUs), from one
    vectorised simulator of many users (training.vector_env).
    """

    total_timesteps: int = 20_000  # env steps to train for (settings.train_timesteps in the workflow)
    seed: int = 7  # seeds RLlib: module init, exploration, and each environment's first reset (RLlib: None)
    horizon: int = HORIZON  # weeks per episode (env_config)
    fcnet_hiddens: list[int] = field(
        default_factory=lambda: [256, 128, 64]
    )  # Q-net encoder (RLlib: [256, 256])
    head_fcnet_hiddens: list[int] = field(default_factory=list)  # value/advantage heads: linear (RLlib: [])
    fcnet_activation: str = "relu"  # encoder activation (RLlib: tanh)
    dueling: bool = True  # Q = V + A - mean(A) (RLlib: True)
    double_q: bool = True  # bootstrap action from the online net, value from the target net (RLlib: True)
    action_masking: bool = True  # masked actions get Q = -inf in training and exploration (RLlib: none)
    # Multi-objective reward weights {component: weight} handed to the env as env_config["reward_weights"];
    # None: the env's own (settings). Components: training.simulator.REWARD_COMPONENTS.
    reward_weights: dict[str, float] | None = None
    gamma: float = 0.95  # discount; episodes are 12 weeks (RLlib: 0.99)
    lr: float = 1e-3  # Adam learning rate (RLlib DQN: 5e-4)
    n_step: int = 3  # n-step returns: a nudge pays off over the following weeks (RLlib: 1)
    target_network_update_freq: int = 1000  # env steps between target syncs (RLlib: 500)
    num_envs_per_env_runner: int = 16  # users in one VectorCoachingEnv, one batched forward pass (RLlib: 1)
    rollout_fragment_length: int = 8  # steps per env and sampling call, 128 in all (RLlib: "auto" = n_step)
    train_batch_size_per_learner: int = 256  # transitions per gradient step (RLlib DQN: 32)
    training_intensity: float = 2.0  # replayed / sampled transitions (RLlib: None = batch / fragment)
    replay_capacity: int = 50_000  # transitions in the replay buffer (RLlib: 50_000)
    prioritized_replay: bool = True  # PrioritizedEpisodeReplayBuffer (RLlib: True), else uniform episodes
    per_alpha: float = 0.6  # priority exponent (RLlib: 0.6)
    per_beta: float = 0.4  # importance-sampling correction (RLlib: 0.4)
    num_steps_sampled_before_learning_starts: int = 500  # warm-up env steps (RLlib: 1000)
    epsilon_final: float = 0.05  # exploration rate at the end of the schedule (RLlib: 0.05)
    epsilon_fraction: float = 0.5  # share of the budget over which epsilon decays from 1 (RLlib: 10k steps)
    epsilon_initial: float = 1.0  # exploration at the start (lower it when starting from the champion)

    def epsilon_schedule(self) -> list[tuple[int, float]]:
        """Piecewise-linear epsilon schedule in env steps, as RLlib expects it."""
        end = max(1, int(self.epsilon_fraction * self.total_timesteps))
        return [(0, self.epsilon_initial), (end, self.epsilon_final)]


def build_config(users: Any, args: DQNArgs, calibration: Any = None) -> Any:
    """The RLlib DQNConfig of `args`, sampling from VectorCoachingEnv on the snapshot users.

    `calibration`: the simulator's SimParams (training.calibrate.load_calibration; None: the defaults).
    """
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    buffer: dict[str, Any] = (
        {"type": "PrioritizedEpisodeReplayBuffer", "alpha": args.per_alpha, "beta": args.per_beta}
        if args.prioritized_replay
        else {"type": "EpisodeReplayBuffer"}
    )
    config = with_vector_env(
        DQNConfig(),
        users,
        args.num_envs_per_env_runner,
        horizon=args.horizon,
        reward_weights=dict(args.reward_weights) if args.reward_weights else None,
        calibration=calibration,
        action_masking=args.action_masking,
    )
    config = (
        # No env seed here: RLlib seeds the vector env's first reset itself from debugging(seed=...).
        config.framework("torch")
        .env_runners(num_env_runners=0, rollout_fragment_length=args.rollout_fragment_length)
        .training(
            gamma=args.gamma,
            lr=args.lr,
            n_step=args.n_step,
            dueling=args.dueling,
            double_q=args.double_q,
            target_network_update_freq=args.target_network_update_freq,
            train_batch_size_per_learner=args.train_batch_size_per_learner,
            training_intensity=args.training_intensity,
            replay_buffer_config={**buffer, "capacity": args.replay_capacity},
            num_steps_sampled_before_learning_starts=args.num_steps_sampled_before_learning_starts,
            epsilon=args.epsilon_schedule(),
        )
        .rl_module(
            model_config={
                "fcnet_hiddens": list(args.fcnet_hiddens),
                "fcnet_activation": args.fcnet_activation,
                "head_fcnet_hiddens": list(args.head_fcnet_hiddens),
            }
        )
        .debugging(seed=args.seed)
    )
    if args.action_masking:
        config = config.rl_module(rl_module_spec=RLModuleSpec(module_class=MaskedDQNTorchRLModule))
    return config


def start_ray() -> bool:
    """Connect to RAY_ADDRESS or start a local Ray; True if this call started it (so we stop it)."""
    import ray

    if ray.is_initialized():
        return False
    s = get_settings()
    ray.init(
        address=s.ray_address,
        num_cpus=None if s.ray_address else s.ray_num_cpus,
        include_dashboard=False,
        ignore_reinit_error=True,
    )
    return True


def _warm_start(algo: Any, state: dict) -> None:
    """Load exported Q-network weights into the learner's module and push them to the env runners."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    from training.export import load_q_weights

    algo.learner_group.foreach_learner(
        lambda learner: load_q_weights(learner.module[DEFAULT_MODULE_ID], state)
    )
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)


def train_dqn(
    users: Any,
    args: DQNArgs,
    init_state: dict | None = None,
    stop_when: Callable[[Any, int], bool] | None = None,
    config: Any = None,
    calibration: Any = None,
) -> tuple[Any, dict]:
    """Train DQN for `args.total_timesteps` env steps on users drawn from the snapshot.

    `init_state`: the state_dict of an exported Q-network (the champion's) to start from instead of a
    random initialisation (same architecture required). `stop_when(module, env_steps)`, called after
    every iteration (its time is not counted as training time), ends training early when it returns True.
    `config`: an RLlib config to use instead of `build_config(users, args, calibration)` (benchmarks).
    `calibration`: the simulator's SimParams to train in (None: the default parameters).

    Returns the trained RLModule (a torch module computing Q-values) and metrics: `curve` (one row per
    iteration: env steps, mean episode return), `env_steps`, `train_seconds`, `env_steps_per_s`.
    """
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        EPISODE_RETURN_MEAN,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
    )

    started = start_ray()
    algo = None
    try:
        algo = (config or build_config(users, args, calibration)).build_algo()
        if init_state is not None:
            _warm_start(algo, init_state)
        curve: list[dict[str, float]] = []
        env_steps, checking = 0, 0.0
        t0 = time.perf_counter()
        while env_steps < args.total_timesteps:
            result = algo.train()
            runners = result.get(ENV_RUNNER_RESULTS, {})
            env_steps = int(runners.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, env_steps))
            ret = runners.get(EPISODE_RETURN_MEAN, float("nan"))
            curve.append(
                {"iteration": len(curve) + 1, "env_steps": env_steps, "episode_return_mean": float(ret)}
            )
            log.info("iteration %d: %d env steps, episode return %.3f", len(curve), env_steps, ret)
            if stop_when is not None:
                t_check = time.perf_counter()
                stop = stop_when(algo.get_module(), env_steps)
                checking += time.perf_counter() - t_check
                if stop:
                    break
        seconds = time.perf_counter() - t0 - checking
        module = algo.get_module()
        module.eval()
    finally:
        if algo is not None:
            algo.stop()
        if started:
            import ray

            ray.shutdown()
    metrics = {
        "curve": curve,
        "env_steps": env_steps,
        "train_seconds": seconds,
        "env_steps_per_s": env_steps / seconds if seconds > 0 else 0.0,
        "args": asdict(args),
    }
    return module, metrics


def main() -> None:
    """Train on a random snapshot and print the curve and speed (a smoke run without the platform)."""
    import argparse

    from training.sample_users import sample_snapshot

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timesteps", type=int, default=DQNArgs.total_timesteps)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=DQNArgs.seed)
    ns = parser.parse_args()
    _, metrics = train_dqn(
        sample_snapshot(ns.users, ns.seed), DQNArgs(total_timesteps=ns.timesteps, seed=ns.seed)
    )
    for row in metrics["curve"]:
        print(
            f"iter {row['iteration']:3d}  steps {row['env_steps']:6d}  "
            f"return {row['episode_return_mean']:.3f}"
        )
    print(
        f"{metrics['env_steps']} env steps in {metrics['train_seconds']:.1f} s: "
        f"{metrics['env_steps_per_s']:.0f} env steps/s (mean return of the last iteration "
        f"{np.nan_to_num(metrics['curve'][-1]['episode_return_mean']):.3f})"
    )


if __name__ == "__main__":
    main()
