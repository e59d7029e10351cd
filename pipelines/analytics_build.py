"""Build the dbt project (schema analytics: staging views, marts, their tests) and its docs, in process."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fincoach.db import connection_parts, get_engine
from fincoach.settings import get_settings

log = logging.getLogger(__name__)

# The dbt project sits beside the Python packages: <repo>/dbt, <repo>/pipelines.
DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"

_FAILED = {"error", "fail", "runtime error"}
# Singular tests that fail when an incremental mart is out of step with its sources (rows deleted or
# rewritten beyond the late-row lookback, e.g. an erased user): the cure is a full refresh.
_DRIFT_TESTS = ("assert_daily_flows_reconcile_with_transactions", "assert_incremental_marts_match_their_sources")
INCREMENTAL_MARTS = ("fct_transactions", "fct_daily_user_financials", "fct_coaching_outcomes", "fct_sessions",
                     "fct_engagement_daily", "dim_users")


# The hourly build's queries read a few rows each through per-user index probes, but the planner's row
# estimates for those probes are large, so Postgres JIT-compiles them: ~0.3-1.9 s per model for tens of
# milliseconds of work. Full builds keep JIT (long aggregations over every row).
_HOURLY_PG_OPTIONS = "-c jit=off"


class AnalyticsBuildError(RuntimeError):
    """`dbt build` (or `dbt docs generate`) did not succeed; the message names the failed nodes."""

    def __init__(self, message: str, failed: list[str] | None = None) -> None:
        super().__init__(message)
        self.failed = failed or []


@contextmanager
def _dbt_env(pg_options: str | None = None) -> Iterator[None]:
    """FINCOACH_PG_* (read by dbt/profiles.yml), and PGOPTIONS when given (libpq's server settings for every
    connection dbt opens), for the duration of one dbt call, then restored."""
    parts = connection_parts()
    wanted = {f"FINCOACH_PG_{key.upper()}": str(value) for key, value in parts.items()}
    if pg_options:
        wanted["PGOPTIONS"] = pg_options
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _state_dir() -> Path:
    path = get_settings().home_dir / "dbt"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _invoke(command: list[str], pg_options: str | None = None) -> Any:
    """Run one dbt command against dbt/ with target and logs under FINCOACH_HOME; the dbtRunnerResult."""
    from dbt.cli.main import dbtRunner  # heavy: only when a build actually runs

    if not (DBT_PROJECT_DIR / "dbt_project.yml").exists():
        raise AnalyticsBuildError(f"no dbt project at {DBT_PROJECT_DIR}: is the repository checked out whole?")
    state = _state_dir()
    args = [
        *command,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(state / "target"),
        "--log-path", str(state / "logs"),
    ]
    with _dbt_env(pg_options):
        return dbtRunner().invoke(args)


def build_analytics(run_id: str, full_refresh: bool = False, recent_tests: bool = False) -> dict:
    """Run `dbt build` (models and their tests); incremental marts are rebuilt whole with `full_refresh`,
    or by themselves when they drifted from their sources or lack columns a new release added to their model.
    A summary, or AnalyticsBuildError naming what failed.

    `recent_tests` (the hourly build): the tests of the large models read only the rows within the late-row
    lookback (dbt/macros/get_where_subquery.sql), so they cost what the new rows cost; ignored on a full refresh.
    """
    recent_tests = recent_tests and not full_refresh
    try:
        return _build(run_id, full_refresh, recent_tests)
    except AnalyticsBuildError as err:
        outdated = {} if full_refresh else outdated_marts()
        if outdated:  # a new release added columns: incremental runs cannot fill them for old rows
            log.warning("incremental marts lack columns of their models (%s): rebuilding them whole", outdated)
            return {**_build(run_id, full_refresh=True, recent_tests=False), "refreshed_after_schema_change": outdated}
        drifted = [
            name for name in err.failed
            if name.startswith("test ") and any(mark in name for mark in (*_DRIFT_TESTS, *INCREMENTAL_MARTS))
        ]
        if full_refresh or not drifted or len(drifted) < len(err.failed):
            raise
        log.warning("incremental marts drifted from their sources (%s): rebuilding them whole", "; ".join(drifted))
        summary = _build(run_id, full_refresh=True, recent_tests=False)
        return {**summary, "refreshed_after_drift": drifted}


def outdated_marts() -> dict[str, list[str]]:
    """The incremental marts whose table lacks columns their model documents, with those columns.

    Read after a failed build: the manifest that build parsed (the models as they are now) against the
    tables in Postgres (as an earlier release built them). Marts not built yet are not listed.
    """
    manifest_path = _state_dir() / "target" / "manifest.json"
    if not manifest_path.exists():
        return {}
    nodes = json.loads(manifest_path.read_text())["nodes"].values()
    declared = {n["name"]: (n["schema"], set(n["columns"])) for n in nodes
                if n["resource_type"] == "model" and n["name"] in INCREMENTAL_MARTS}
    with get_engine().connect() as conn:
        rows = conn.execute(sa.text(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_name = any(:names)"
        ), {"names": list(declared)}).all()
    present: dict[str, set[str]] = {}
    for schema, table, column in rows:
        if declared[table][0] == schema:
            present.setdefault(table, set()).add(column)
    return {name: sorted(columns - present[name]) for name, (_, columns) in declared.items()
            if name in present and columns - present[name]}


def _build(run_id: str, full_refresh: bool, recent_tests: bool) -> dict:
    started = time.perf_counter()
    res = _invoke([
        "build", "--no-use-colors", *(["--full-refresh"] if full_refresh else []),
        *(["--vars", json.dumps({"recent_rows_only": True})] if recent_tests else []),
    ], pg_options=_HOURLY_PG_OPTIONS if recent_tests else None)
    seconds = round(time.perf_counter() - started, 2)
    if res.result is None or not hasattr(res.result, "results"):
        raise AnalyticsBuildError(f"dbt build did not run (run {run_id}): {res.exception}") from res.exception

    counts = {"models": 0, "tests_passed": 0, "tests_failed": 0, "tests_warned": 0, "skipped": 0}
    busy = {"model": 0.0, "test": 0.0}  # summed node times (threads overlap them)
    node_seconds: dict[str, float] = {}
    failed: list[str] = []
    for node_result in res.result.results:
        node = node_result.node
        status = str(node_result.status)
        kind = str(node.resource_type)
        if kind in busy:
            busy[kind] += float(node_result.execution_time or 0.0)
            node_seconds[f"{kind} {node.name}"] = round(float(node_result.execution_time or 0.0), 2)
        if status in _FAILED:
            failed.append(f"{kind} {node.name}: {status}" + (f" ({node_result.message})" if node_result.message else ""))
        if status == "skipped":
            counts["skipped"] += 1
        elif kind == "model" and status == "success":
            counts["models"] += 1
        elif kind in {"test", "unit_test"}:
            if status == "pass":
                counts["tests_passed"] += 1
            elif status == "warn":
                counts["tests_warned"] += 1
            elif status in _FAILED:
                counts["tests_failed"] += 1
    summary = {
        **counts, "seconds": seconds, "model_seconds": round(busy["model"], 2), "test_seconds": round(busy["test"], 2),
        "slowest": dict(sorted(node_seconds.items(), key=lambda item: -item[1])[:8]),
        "run_id": run_id, "full_refresh": full_refresh, "recent_tests": recent_tests,
        "success": bool(res.success) and not failed,
    }
    if not summary["success"]:
        names = "; ".join(failed) or str(res.exception)
        raise AnalyticsBuildError(
            f"dbt build failed (run {run_id}): {names}. Fix the source rows or the models, then rerun; "
            f"details in {_state_dir() / 'logs' / 'dbt.log'}",
            failed,
        )
    log.info("dbt build: %(models)d models, %(tests_passed)d tests passed in %(seconds).1fs", summary)
    return summary


def generate_docs() -> str:
    """Run `dbt docs generate`; the path of the generated index.html (catalog and manifest beside it)."""
    res = _invoke(["docs", "generate", "--no-use-colors"])
    if not res.success:
        raise AnalyticsBuildError(f"dbt docs generate failed: {res.exception}")
    index = _state_dir() / "target" / "index.html"
    if not index.exists():
        raise AnalyticsBuildError(f"dbt docs generate reported success but wrote no {index}")
    return str(index)
