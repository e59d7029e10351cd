"""One evaluation of a candidate as the training DAG runs it: baselines, paired comparisons, OPE, report.

Every policy meets the same `settings.eval_users` simulated users (drawn from the held-out users with
`settings.train_seed`): the candidate, the champion (when there is one), the rules, a random policy and
two contextual bandits fitted on the training users. OPE: a log of the rules served epsilon-greedily
(`settings.ope_logging_epsilon`) on the same held-out users, from which the candidate's, the rules' and
the random policy's values are estimated and checked against the simulator; and, when enough is logged,
the candidate's and the rules' acceptance rates estimated from the real served log (no ground truth).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fincoach.feature_spec import raw_matrix
from fincoach.policy import Policy
from fincoach.rules import RulePolicy
from fincoach.settings import get_settings
from training import ope
from training.bandits import LinUCBPolicy, RandomPolicy, ThompsonPolicy, fit_bandit
from training.evaluate import compare, evaluate_all
from training.sim_params import SimParams


def baselines(train_users: pd.DataFrame, seed: int, params: SimParams | None = None) -> dict[str, Policy]:
    """The rules, a random policy and LinUCB / Thompson sampling fitted in the simulator on `train_users`."""
    s = get_settings()
    raw = raw_matrix(train_users)
    linucb, thompson = LinUCBPolicy(), ThompsonPolicy(seed=seed)
    fit_bandit(linucb, raw, s.bandit_episodes, s.bandit_users, seed, params=params)
    fit_bandit(thompson, raw, s.bandit_episodes, s.bandit_users, seed + 1, params=params)
    return {"rules": RulePolicy(), "random": RandomPolicy(seed), "linucb": linucb, "thompson": thompson}


def run_evaluation(
    candidate: Policy,
    champion: Policy | None,
    train_users: pd.DataFrame,
    eval_users: pd.DataFrame,
    run_id: str | None = None,
    curve: list[dict] | None = None,
    snapshot: pd.DataFrame | None = None,
    params: SimParams | None = None,
) -> dict[str, Any]:
    """{report, segments_vs_current, ope, ope_served}; logged to MLflow run `run_id` (metrics, tables, plots).

    `snapshot`: every user, to match the served log against (default: the training and evaluation users).
    `params`: the simulator's parameters (the run's calibration; None: the defaults), for every rollout,
    the bandits' fitting and the simulated OPE log.
    """
    s = get_settings()
    seed = s.train_seed
    policies: dict[str, Policy] = {"candidate": candidate, **baselines(train_users, seed, params)}
    if champion is not None:
        policies["champion"] = champion
    report, rollouts = evaluate_all(
        policies,
        eval_users,
        s.eval_users,
        seed,
        reference="rules",
        oracle_draws=s.oracle_draws,
        params=params,
    )
    current = "champion" if champion is not None else "rules"
    segments_vs_current = compare(rollouts["candidate"], rollouts[current], seed)["segments"]
    log = ope.simulate_log(
        RulePolicy(), eval_users, s.eval_users, seed + 2, s.ope_logging_epsilon, params=params
    )
    checks = {
        who: ope.check_against_simulator(policies[who], log, seed) for who in ("candidate", "rules", "random")
    }
    everyone = snapshot if snapshot is not None else pd.concat([train_users, eval_users])
    served = served_log_ope({k: policies[k] for k in ("candidate", "rules")}, everyone, seed)
    if run_id is not None:
        from training.report import log_report

        log_report(run_id, report, checks, curve, served)
    return {"report": report, "segments_vs_current": segments_vs_current, "ope": checks, "ope_served": served}


def served_log_ope(policies: dict[str, Policy], snapshot: pd.DataFrame, seed: int = 0) -> dict | None:
    """OPE of each policy's acceptance rate on the served log (app.coaching_interactions), if long enough."""
    from fincoach.db import get_engine
    from training.offline import read_interactions

    interactions = read_interactions(get_engine())
    if len(interactions) < get_settings().offline_min_interactions:
        return None
    log, counts = ope.log_from_interactions(interactions, snapshot)
    if counts["used"] == 0:
        return {"counts": counts}
    return {"counts": counts, **{who: ope.estimate(p, log, seed) for who, p in policies.items()}}
