"""`fincoach`: the command line of the platform (seed, run, serve, experiment, model, features, docs, ...)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import warnings

from rich.console import Console

from fincoach import db
from fincoach.settings import get_settings

console = Console()


def _engine():
    from fincoach.migrate import migrate

    engine = db.get_engine()
    applied = migrate(engine)
    if applied:
        console.print(f"[dim]applied migrations: {', '.join(applied)}[/]")
    return engine


def cmd_seed(args: argparse.Namespace) -> int:
    """Generate synthetic users and their history into schema app (rerun-safe)."""
    from pipelines.seed import seed

    engine = _engine()
    with console.status(f"generating {args.users} users × {args.days} days (seed {args.seed})"):
        result = seed(engine, users=args.users, days=args.days, seed=args.seed)
    for table, n in result["generated"].items():
        console.print(f"  {table:<24} generated {n:>9,}  inserted {result['inserted'][table]:>9,}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: database, synthetic data, then the four DAGs once, in order, through Airflow."""
    from fincoach.run_job import run_main_job

    return run_main_job(console, users=args.users, days=args.days, seed=args.seed, skip_seed=args.skip_seed)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the online scorer (FastAPI) on the configured host and port."""
    from serving.app import run

    _engine()
    run()
    return 0


def cmd_ingest_api(args: argparse.Namespace) -> int:
    """Start the event ingestion API (POST /events) on the configured host and port."""
    from pipelines.ingest_api import run

    _engine()
    s = get_settings()
    console.print(f"ingestion API on http://{s.ingest_host}:{s.ingest_port} (docs at /docs)")
    run()
    return 0


def cmd_erase_user(args: argparse.Namespace) -> int:
    """Erase one user everywhere (app, lake, feature store, serving) now; records the request."""
    from pipelines.erasure import erase_user

    if args.user_id <= 0:
        console.print(f"[red]user id must be a positive integer (app.users.user_id), got {args.user_id}[/]")
        return 2
    result = erase_user(_engine(), args.user_id)
    for where, n in result["removed"].items():
        console.print(f"  {where:<48} {n:>9,}")
    console.print(f"user {args.user_id} erased (request {result['request_id']})")
    return 0


def cmd_backfill_extract(args: argparse.Namespace) -> int:
    """Re-extract every hour of (START, END] into the lake (same bytes as the hourly runs wrote)."""
    from datetime import UTC, datetime

    from pipelines.extract import backfill

    def when(text: str) -> datetime:
        t = datetime.fromisoformat(text)
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    totals = backfill(_engine(), when(args.start), when(args.end), args.run_id)
    for table, t in totals.items():
        console.print(f"  {table:<24} {t['intervals']:>4} hours  {t['accepted']:>10,} accepted  "
                      f"{t['quarantined']:>8,} quarantined")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """Print the effective settings (password hidden)."""
    from sqlalchemy.engine import make_url

    from fincoach import tracking

    s = get_settings()
    rows = {
        "FINCOACH_HOME": str(s.home_dir),
        "FINCOACH_DATABASE_URL": make_url(db.libpq_url()).render_as_string(hide_password=True)
        + ("  (embedded pgserver)" if db.is_embedded() else ""),
        "FINCOACH_LAKE_URI": s.lake,
        "MLFLOW_TRACKING_URI": make_url(tracking.tracking_uri()).render_as_string(hide_password=True)
        if "://" in tracking.tracking_uri() and tracking.tracking_uri().startswith("postgresql")
        else tracking.tracking_uri(),
        "MLflow artifacts": s.artifact_root,
        "RAY_ADDRESS": s.ray_address or "(local Ray on this machine)",
        "AIRFLOW_HOME": str(s.airflow_dir),
        "model name": s.model_name,
        "scorer": f"http://{s.scorer_host}:{s.scorer_port}",
        "ingestion API": f"http://{s.ingest_host}:{s.ingest_port}",
    }
    for k, v in rows.items():
        console.print(f"{k:<24} {v}")
    return 0


def _psql_binary() -> str:
    found = shutil.which("psql")
    if found:
        return found
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / "psql")


def cmd_psql(args: argparse.Namespace) -> int:
    """Open psql on the effective database (starting the embedded one if needed), or run -c SQL."""
    _engine()
    cmd = [_psql_binary(), db.libpq_url()]
    if args.command:
        cmd += ["-c", args.command]
    return subprocess.run(cmd, check=False).returncode


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the platform schemas."""
    _engine()
    console.print("schemas up to date")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Start the Airflow UI (airflow standalone) or the MLflow UI against the effective services."""
    from fincoach import tracking
    from fincoach.airflow_env import airflow_environment, run_airflow

    _engine()
    if args.which == "airflow":
        env = airflow_environment()
        run_airflow(["db", "migrate"], env, capture=True)
        console.print("Airflow UI on http://127.0.0.1:8080 (login printed by airflow standalone below)")
        return run_airflow(["standalone"], env).returncode
    uri = tracking.tracking_uri()
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    console.print(f"MLflow UI on http://127.0.0.1:{args.port}")
    return subprocess.run(
        [mlflow_bin, "ui", "--backend-store-uri", uri, "--default-artifact-root",
         get_settings().artifact_root, "--host", "127.0.0.1", "--port", str(args.port)],
        check=False,
    ).returncode


def _utc_time(text: str):
    """A command-line time: an ISO date or datetime, UTC unless it says otherwise."""
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _duration(text: str):
    """A step like 1d, 6h or 30m."""
    from datetime import timedelta

    units = {"d": "days", "h": "hours", "m": "minutes"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"step {text!r}: expected a number and d, h or m, e.g. 1d or 6h")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def cmd_docs(args: argparse.Namespace) -> int:
    """Generate the dbt docs (models, columns, lineage) and serve them on 127.0.0.1, or print where they are."""
    import functools
    import http.server
    from pathlib import Path

    from pipelines.analytics_build import generate_docs

    _engine()
    with console.status("dbt docs generate"):
        index = Path(generate_docs())
    if args.no_serve:
        console.print(str(index), soft_wrap=True, highlight=False)
        return 0
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(index.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        console.print(f"dbt docs on http://127.0.0.1:{args.port} (Ctrl-C to stop)")
        server.serve_forever()
    return 0


def cmd_features_backfill(args: argparse.Namespace) -> int:
    """Build, validate and publish feature snapshots to the lake for every as_of from --start to --end."""
    from pipelines.analytics_build import build_analytics
    from pipelines.feature_store import backfill

    engine = _engine()
    if not args.skip_dbt:
        with console.status("dbt build"):
            build_analytics("backfill")

    def show(as_of, result: dict) -> None:
        console.print(f"  {as_of.isoformat()}  {result['rows']:>8,} users  {result['seconds']:>6.1f}s  {result['relpath']}")

    results = backfill(engine, args.start, args.end, args.every, progress=show)
    console.print(f"{len(results)} snapshots published to the lake")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    """Champion and challenger of the registered model: status, promote VERSION, rollback."""
    from training.registry import RegistryError, make_champion, rollback, status

    _engine()
    try:
        if args.action == "promote":
            if not args.version:
                console.print("[red]usage:[/] fincoach model promote VERSION [--force] [--reason TEXT]")
                return 2
            version = next((v for v in status()["versions"] if v["version"] == args.version), None)
            if version and version["decision"] == "kept_challenger" and not args.force:
                console.print(f"[yellow]version {args.version} failed the gate:[/] {version['reason']}")
                console.print("promote it anyway with --force")
                return 1
            done = make_champion(args.version, by="human", reason=args.reason or "promoted by hand")
            console.print(f"champion is now version {done['champion']} (was {done['previous']})")
        elif args.action == "rollback":
            done = rollback(by="human")
            console.print(f"champion is now version {done['champion']} (rolled back {done['rolled_back']})")
        else:
            st = status()
            console.print(f"model {st['model']}: champion {st['champion']}, challenger {st['challenger']}")
            console.print(f"champion history (oldest first): {', '.join(st['history']) or '-'}")
            for v in st["versions"]:
                console.print(f"  v{v['version']:<4} {v['decision'] or '-':<16} mean {v['mean_reward'] or '-':<10} "
                              f"CI low {v['ci_low'] or '-':<10} {v['reason'][:80]}")
    except RegistryError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    """Create, stop or analyse an A/B experiment of the online scorer."""
    from datetime import UTC, datetime

    from serving.experiment_analysis import analyse_experiment
    from serving.experiments import ExperimentError, create_experiment, parse_arm, stop_experiment

    engine = _engine()
    try:
        if args.action == "create":
            create_experiment(engine, args.experiment_id, [parse_arm(a) for a in args.arm], args.description)
            console.print(f"experiment {args.experiment_id} is running")
        elif args.action == "stop":
            stop_experiment(engine, args.experiment_id)
            console.print(f"experiment {args.experiment_id} stopped")
        else:
            at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
            summary = analyse_experiment(args.experiment_id, at if at.tzinfo else at.replace(tzinfo=UTC), engine)
            for arm in summary["arms"]:
                console.print(arm)
            console.print(f"plot: {summary['plot']}")
    except ExperimentError as exc:
        console.print(f"[red]experiment error:[/] {exc}")
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `fincoach`."""
    p = argparse.ArgumentParser(prog="fincoach", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="cmd", required=True)

    def population(sp: argparse.ArgumentParser, users: int, days: int) -> None:
        sp.add_argument("--users", type=int, default=users, help=f"synthetic users (default {users})")
        sp.add_argument("--days", type=int, default=days, help=f"days of history (default {days})")
        sp.add_argument("--seed", type=int, default=42, help="random seed (default 42)")

    sp = sub.add_parser("seed", help=cmd_seed.__doc__)
    population(sp, 1000, 90)
    sp.set_defaults(fn=cmd_seed)
    sp = sub.add_parser("run", help=cmd_run.__doc__)
    population(sp, 500, 60)
    sp.add_argument("--skip-seed", action="store_true", help="use the data already in schema app")
    sp.set_defaults(fn=cmd_run)
    sub.add_parser("serve", help=cmd_serve.__doc__).set_defaults(fn=cmd_serve)
    sub.add_parser("env", help=cmd_env.__doc__).set_defaults(fn=cmd_env)
    sub.add_parser("ingest-api", help=cmd_ingest_api.__doc__).set_defaults(fn=cmd_ingest_api)
    sp = sub.add_parser("backfill-extract", help=cmd_backfill_extract.__doc__)
    sp.add_argument("start", help="ISO date-time (UTC unless it says otherwise), exclusive")
    sp.add_argument("end", help="ISO date-time, inclusive")
    sp.add_argument("--run-id", default="backfill", help="run id in the file names (default backfill)")
    sp.set_defaults(fn=cmd_backfill_extract)
    sp = sub.add_parser("erase-user", help=cmd_erase_user.__doc__)
    sp.add_argument("user_id", type=int, help="app.users.user_id of the user to erase")
    sp.set_defaults(fn=cmd_erase_user)
    sp = sub.add_parser("psql", help=cmd_psql.__doc__)
    sp.add_argument("-c", dest="command", help="run one SQL command and exit")
    sp.set_defaults(fn=cmd_psql)
    sub.add_parser("migrate", help=cmd_migrate.__doc__).set_defaults(fn=cmd_migrate)
    sp = sub.add_parser("experiment", help=cmd_experiment.__doc__)
    sp.add_argument("action", choices=["create", "stop", "analyse"])
    sp.add_argument("experiment_id")
    sp.add_argument("--arm", action="append", default=[], help="create: name=kind:ref:share[:control], repeated")
    sp.add_argument("--description", default="", help="create: what the experiment tests")
    sp.add_argument("--at", help="analyse: exposures before this ISO time (default now)")
    sp.set_defaults(fn=cmd_experiment)
    sp = sub.add_parser("ui", help=cmd_ui.__doc__)
    sp.add_argument("which", choices=["airflow", "mlflow"])
    sp.add_argument("--port", type=int, default=5000, help="MLflow UI port (default 5000)")
    sp.set_defaults(fn=cmd_ui)
    sp = sub.add_parser("docs", help=cmd_docs.__doc__)
    sp.add_argument("--port", type=int, default=8081, help="port of the docs server (default 8081)")
    sp.add_argument("--no-serve", action="store_true", help="only generate; print the path of index.html")
    sp.set_defaults(fn=cmd_docs)
    features = sub.add_parser("features", help="the feature store: backfill").add_subparsers(dest="action", required=True)
    sp = features.add_parser("backfill", help=cmd_features_backfill.__doc__)
    sp.add_argument("--start", type=_utc_time, required=True, help="first as_of (ISO date or time, UTC)")
    sp.add_argument("--end", type=_utc_time, required=True, help="last as_of (included)")
    sp.add_argument("--every", type=_duration, default="1d", help="step between as_ofs: 1d, 6h, 30m (default 1d)")
    sp.add_argument("--skip-dbt", action="store_true", help="use the analytics models as they are")
    sp.set_defaults(fn=cmd_features_backfill)
    sp = sub.add_parser("model", help=cmd_model.__doc__)
    sp.add_argument("action", choices=["status", "promote", "rollback"])
    sp.add_argument("version", nargs="?", help="model version to promote")
    sp.add_argument("--force", action="store_true", help="promote a version that failed the gate")
    sp.add_argument("--reason", help="why (stored on the version)")
    sp.set_defaults(fn=cmd_model)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fincoach` command."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except db.DatabaseConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


