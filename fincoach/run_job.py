"""`fincoach run`: the whole loop once — database, synthetic data, then the four DAGs through Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from fincoach import db
from fincoach.airflow_env import airflow_bin, airflow_environment, run_airflow
from fincoach.migrate import migrate
from fincoach.settings import get_settings

DAG_ORDER = ("fincoach_hourly", "fincoach_training", "fincoach_recommendations", "fincoach_monitoring")


class RunFailed(RuntimeError):
    """A DAG of the main job failed; the message names it and its log file."""


def run_dag(dag_id: str, logical: datetime, env: dict[str, str], log_file: Path) -> float:
    """`airflow dags test` one DAG for `logical`, output to `log_file`; returns seconds; raises RunFailed."""
    started = time.perf_counter()
    with log_file.open("w") as out:
        proc = subprocess.run(
            [airflow_bin(), "dags", "test", dag_id, logical.isoformat()],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-40:])
        raise RunFailed(f"{dag_id} failed (exit {proc.returncode}); full log: {log_file}\n{tail}")
    return time.perf_counter() - started


def steps_of(logical: datetime) -> dict[str, dict[str, Any]]:
    """The last recorded details of every step run for `logical` (from ops.run_log)."""
    with db.get_engine().connect() as conn:
        rows = conn.execute(
            sa.text("select step, details from ops.run_log where interval_end = :t order by id"), {"t": logical}
        ).all()
    return {r.step: r.details for r in rows}


def run_main_job(console: Console, users: int, days: int, seed: int, skip_seed: bool = False) -> int:
    """Run the loop end to end with progress output and a closing summary; returns an exit code."""
    s = get_settings()
    t0 = time.perf_counter()
    with console.status("starting the database and creating the schemas"):
        engine = db.get_engine()
        migrate(engine)
    where = "embedded PostgreSQL under " + str(s.home_dir / "pg") if db.is_embedded() else "FINCOACH_DATABASE_URL"
    console.print(f"[green]✓[/] database ready ({where})")

    seeded = None
    if not skip_seed:
        from pipelines.seed import seed as seed_data

        with console.status(f"generating synthetic data: {users} users × {days} days (seed {seed})"):
            seeded = seed_data(engine, users=users, days=days, seed=seed)
        console.print(
            f"[green]✓[/] synthetic data: {sum(seeded['generated'].values()):,} rows generated, "
            f"{sum(seeded['inserted'].values()):,} new"
        )

    with console.status("preparing Airflow's metadata database"):
        env = airflow_environment()
        migrated = run_airflow(["db", "migrate"], env, capture=True)
    if migrated.returncode != 0:
        console.print(f"[red]airflow db migrate failed[/]\n{migrated.stderr[-3000:]}")
        return 1
    console.print("[green]✓[/] Airflow ready")

    logical = datetime.now(UTC).replace(microsecond=0)
    log_dir = s.home_dir / "logs" / logical.strftime("%Y%m%dT%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    for dag_id in DAG_ORDER:
        with console.status(f"running DAG {dag_id} (airflow dags test, logical date {logical.isoformat()})"):
            try:
                seconds = run_dag(dag_id, logical, env, log_dir / f"{dag_id}.log")
            except RunFailed as exc:
                console.print(f"[red]✗ {exc}[/]")
                return 1
        console.print(f"[green]✓[/] {dag_id} in {seconds:.0f}s  [dim]{log_dir / (dag_id + '.log')}[/]")

    print_summary(console, steps_of(logical), seeded, time.perf_counter() - t0)
    return 0


def _get(d: dict | None, *keys: str, default: Any = "–") -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def print_summary(console: Console, steps: dict[str, dict], seeded: dict | None, seconds: float) -> None:
    """One-screen summary of what the run did, and where to look next."""
    s = get_settings()
    t = Table(title=f"FinCoach run summary ({seconds:.0f}s)", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    if seeded:
        t.add_row("rows generated", f"{sum(seeded['generated'].values()):,} ({sum(seeded['inserted'].values()):,} new)")
    extract = steps.get("extract", {})
    extracted = sum(v.get("rows", 0) for v in extract.values() if isinstance(v, dict))
    t.add_row("rows extracted", f"{extracted:,} into {s.lake}/raw")
    t.add_row("dbt", f"{_get(steps, 'dbt_build', 'models')} models built, "
                     f"{_get(steps, 'dbt_build', 'tests_passed')} tests passed, "
                     f"{_get(steps, 'dbt_build', 'tests_failed')} failed")
    for step in ("validate_raw", "validate_features"):
        v = steps.get(step, {})
        t.add_row(f"expectations ({step.removeprefix('validate_')})",
                  f"{_get(v, 'passed')}/{_get(v, 'evaluated')} passed, {_get(v, 'warnings', default=0)} warnings")
    t.add_row("features", f"{_get(steps, 'publish_features', 'rows')} users → {_get(steps, 'publish_features', 'path')}")
    tr = steps.get("train_candidate", {})
    t.add_row("training", f"{_get(tr, 'env_steps')} env steps in {_fmt(_get(tr, 'train_seconds'))}s "
                          f"({_fmt(_get(tr, 'env_steps_per_s'))} steps/s)")
    ev = steps.get("evaluate_candidate", {})
    t.add_row("evaluation (mean reward per simulated user)",
              f"agent {_fmt(_get(ev, 'candidate', 'mean_reward'))} vs rule baseline "
              f"{_fmt(_get(ev, 'rules', 'mean_reward'))}; current champion "
              f"{_fmt(_get(ev, 'champion', 'mean_reward', default='none'))}")
    gate = steps.get("promote_if_better", {})
    t.add_row("model", f"{s.model_name} version {_get(gate, 'version')}: "
                       f"{_get(gate, 'decision')} (champion: version {_get(gate, 'champion_version')})")
    t.add_row("gate reason", str(_get(gate, "reason")))
    sc = steps.get("score_all_users", {})
    t.add_row("recommendations", f"{_get(sc, 'rows')} rows for {_get(sc, 'users')} users in serving.recommendations "
                                 f"(policy {_get(sc, 'model_version')}, {_get(sc, 'source')})")
    mix = steps.get("served_action_mix", {})
    if mix.get("action_share"):
        t.add_row("served action mix", json.dumps(mix["action_share"]))
    t.add_row("feature drift", f"{_get(steps, 'feature_drift', 'status')}")
    console.print(t)
    console.print(
        "Next:\n"
        "  Airflow UI   .venv/bin/fincoach ui airflow     → http://127.0.0.1:8080\n"
        "  MLflow UI    .venv/bin/fincoach ui mlflow      → http://127.0.0.1:5000\n"
        f"  scorer       .venv/bin/fincoach serve          → http://{s.scorer_host}:{s.scorer_port}/docs\n"
        "  SQL          .venv/bin/fincoach psql -c 'select * from serving.recommendations limit 5'"
    )
