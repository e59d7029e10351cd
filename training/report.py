"""The evaluation report in MLflow: metrics with plain names, tables (JSON + CSV) and PNG plots.

Metric names: `eval/<policy>_mean_reward`, `_ci_low`, `_ci_high`, `_relevance`, `_nudge_rate`,
`eval/<policy>_segment/<kind>/<segment>` (mean return of the segment, e.g. `archetype/spender`);
`eval/<policy>_vs_rules_diff` (+ `_ci_low`, `_ci_high`, `_p`); `ope/<policy>_<estimator>` and
`ope/<policy>_<estimator>_abs_error` (simulated log); `ope_served/<policy>_<estimator>` (served log). Plots under `plots/`, tables under `tables/`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def eval_metrics(report: dict, ope: dict | None) -> dict[str, float]:
    """Flat metric dict of an evaluate_all report and OPE checks (finite values only)."""
    out: dict[str, float] = {}
    for who, s in report["policies"].items():
        for key in (
            "mean_reward",
            "ci_low",
            "ci_high",
            "stderr_reward",
            "relevance",
            "nudge_rate",
            "acceptance_rate",
        ):
            if s.get(key) is not None:
                out[f"eval/{who}_{key}"] = float(s[key])
        out |= {f"eval/{who}_component/{k}": float(v) for k, v in s["components"].items()}
        out |= {f"eval/{who}_action_mix/{k}": float(v) for k, v in s["action_mix"].items()}
        out |= {
            f"eval/{who}_segment/{kind}/{name}": float(row["mean"])
            for kind, rows in s["segments"].items()
            for name, row in rows.items()
        }
    ref = report["reference"]
    for who, c in report["vs_reference"].items():
        out[f"eval/{who}_vs_{ref}_diff"] = c["diff_mean"]
        out[f"eval/{who}_vs_{ref}_diff_ci_low"] = c["diff_ci_low"]
        out[f"eval/{who}_vs_{ref}_diff_ci_high"] = c["diff_ci_high"]
        out[f"eval/{who}_vs_{ref}_p"] = c["p_value"]
    for who, check in (ope or {}).items():
        out[f"ope/{who}_truth"] = check["truth"]["value"]
        for est in ("ips", "snips", "dm", "dr"):
            out[f"ope/{who}_{est}"] = check[est]["value"]
            out[f"ope/{who}_{est}_abs_error"] = abs(check[est]["error"])
    return {k: v for k, v in out.items() if np.isfinite(v)}


def policy_table(report: dict) -> pd.DataFrame:
    """One row per policy: outcome with CI, paired effect over the reference, relevance, behaviour."""
    rows = []
    for who, s in report["policies"].items():
        c = report["vs_reference"].get(who, {})
        rows.append(
            {
                "policy": who,
                "version": s["policy"],
                "mean_reward": s["mean_reward"],
                "ci_low": s["ci_low"],
                "ci_high": s["ci_high"],
                "effect_vs_rules": c.get("diff_mean", 0.0),
                "effect_ci_low": c.get("diff_ci_low", 0.0),
                "effect_ci_high": c.get("diff_ci_high", 0.0),
                "p_value": c.get("p_value", 1.0),
                "relevance": s["relevance"],
                "nudge_rate": s["nudge_rate"],
                "acceptance_rate": s["acceptance_rate"],
            }
        )
    return pd.DataFrame(rows)


def segment_table(report: dict) -> pd.DataFrame:
    """One row per (policy, segment kind, segment): mean with CI and size."""
    rows = [
        {"policy": who, "kind": kind, "segment": name, **row}
        for who, s in report["policies"].items()
        for kind, by_name in s["segments"].items()
        for name, row in by_name.items()
    ]
    return pd.DataFrame(rows)


def ope_table(ope: dict) -> pd.DataFrame:
    """One row per (target policy, estimator): estimate, CI, simulator truth, error, coverage."""
    rows = [
        {"policy": who, "estimator": est, "truth": check["truth"]["value"], **check[est]}
        for who, check in ope.items()
        for est in ("ips", "snips", "dm", "dr")
    ]
    return pd.DataFrame(rows)


def figures(report: dict, ope: dict | None, curve: list[dict] | None) -> dict[str, Any]:
    """{artifact path: matplotlib figure} of the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, Any] = {}
    table = policy_table(report)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    y = np.arange(len(table))
    ax.errorbar(
        table["mean_reward"],
        y,
        xerr=[table["mean_reward"] - table["ci_low"], table["ci_high"] - table["mean_reward"]],
        fmt="o",
        capsize=4,
    )
    ax.set_yticks(y, table["policy"])
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_xlabel(f"mean episode return per user (95% bootstrap CI, n={report['n_users']})")
    ax.set_title("Policies on the same held-out simulated users")
    fig.tight_layout()
    figs["plots/policies_ci.png"] = fig

    seg = segment_table(report)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = sorted(set(zip(seg["kind"], seg["segment"], strict=True)))
    width = 0.8 / max(1, seg["policy"].nunique())
    for k, (who, part) in enumerate(seg.groupby("policy", sort=False)):
        means = part.set_index(["kind", "segment"]).reindex(labels)["mean"]
        ax.barh(np.arange(len(labels)) + k * width, means, height=width, label=who)
    ax.set_yticks(np.arange(len(labels)) + 0.4 - width / 2, [f"{k}: {s}" for k, s in labels])
    ax.set_xlabel("mean episode return per user")
    ax.legend(fontsize=7)
    ax.set_title("Per segment (generalisation)")
    fig.tight_layout()
    figs["plots/segments.png"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for who, s in report["policies"].items():
        axes[0].plot(np.arange(1, len(s["weekly_reward"]) + 1), s["weekly_reward"], label=who)
    axes[0].set_xlabel("week")
    axes[0].set_ylabel("mean reward")
    axes[0].legend(fontsize=7)
    axes[0].set_title("Evaluation episode")
    points = [r for r in curve or [] if np.isfinite(r.get("episode_return_mean", np.nan))]
    if points:
        axes[1].plot([r["env_steps"] for r in points], [r["episode_return_mean"] for r in points])
    axes[1].set_xlabel("env steps")
    axes[1].set_ylabel("training episode return")
    axes[1].set_title("DQN training curve")
    fig.tight_layout()
    figs["plots/curves.png"] = fig

    if ope:
        frame = ope_table(ope)
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for k, (who, part) in enumerate(frame.groupby("policy", sort=False)):
            x = np.arange(len(part)) + k * (len(part) + 1)
            ax.errorbar(
                x,
                part["value"],
                yerr=[part["value"] - part["ci_low"], part["ci_high"] - part["value"]],
                fmt="o",
                capsize=3,
            )
            ax.hlines(part["truth"].iloc[0], x[0] - 0.5, x[-1] + 0.5, colors="k", linestyles="--")
            for xi, est in zip(x, part["estimator"], strict=True):
                ax.annotate(f"{who}\n{est}", (xi, ax.get_ylim()[0]), fontsize=6, ha="center")
        ax.set_ylabel("value per decision (dashed: simulator truth)")
        ax.set_title("Off-policy estimates vs the simulator's on-policy value")
        fig.tight_layout()
        figs["plots/ope.png"] = fig
    return figs


def served_metrics(served: dict | None) -> dict[str, float]:
    """`ope_served/<policy>_<estimator>` (acceptance rate) and `ope_served/used` from the served log."""
    out: dict[str, float] = {}
    for who, est in (served or {}).items():
        if who == "counts":
            out["ope_served/used"] = float(est["used"])
            continue
        out |= {
            f"ope_served/{who}_{name}": float(est[name]["value"]) for name in ("ips", "snips", "dm", "dr")
        }
    return {k: v for k, v in out.items() if np.isfinite(v)}


def log_report(
    run_id: str, report: dict, ope: dict | None, curve: list[dict] | None, served: dict | None = None
) -> None:
    """Log metrics, tables and plots of an evaluation onto MLflow run `run_id`."""
    import matplotlib.pyplot as plt
    import mlflow

    client = mlflow.MlflowClient()
    metrics = eval_metrics(report, ope) | served_metrics(served)
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(k, v, 0, 0) for k, v in metrics.items()])
    client.log_dict(run_id, {"report": report, "ope": ope, "ope_served": served}, "evaluation.json")
    tables = {"policies": policy_table(report), "segments": segment_table(report)}
    if ope:
        tables["ope"] = ope_table(ope)
    for name, frame in tables.items():
        client.log_text(run_id, frame.to_csv(index=False), f"tables/{name}.csv")
        client.log_table(run_id, frame, f"tables/{name}.json")
    for path, fig in figures(report, ope, curve).items():
        client.log_figure(run_id, fig, path)
        plt.close(fig)
