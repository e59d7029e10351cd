"""What every Airflow task shares: its data interval, a file-safe run id, and recording what a step did.

Tasks are thin: each one calls `run_step("name", function, *args)`, which runs that one function of our
packages and records its (JSON-able) result in ops.run_log for the run summary and run history.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from fincoach.db import get_engine

log = logging.getLogger(__name__)

FEATURES_ASSET = "fincoach_features"
MODEL_ASSET = "fincoach_model"


def _context() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()


def interval_end() -> datetime:
    """End of the running task's data interval (the trigger time for manual and test runs)."""
    ctx = _context()
    end = ctx.get("data_interval_end") or ctx["dag_run"].run_after
    return end if isinstance(end, datetime) else datetime.fromisoformat(str(end))


def run_id() -> str:
    """The DAG run id, made safe for file names and MLflow run names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", _context()["dag_run"].run_id)


def record(dag_id: str, run: str, end: datetime, step: str, details: dict[str, Any]) -> None:
    """Append what a step did to ops.run_log."""
    with get_engine().begin() as conn:
        conn.execute(
            sa.text(
                "insert into ops.run_log (dag_id, run_id, interval_end, step, details) "
                "values (:d, :r, :e, :s, cast(:j as jsonb))"
            ),
            {"d": dag_id, "r": run, "e": end, "s": step, "j": json.dumps(details, default=str)},
        )


def run_step(step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one function for the current task, record its result in ops.run_log, and return it."""
    ctx = _context()
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    details = result if isinstance(result, dict) else {"result": result}
    details = {**details, "step_seconds": round(time.perf_counter() - started, 2)}
    record(ctx["dag"].dag_id, run_id(), interval_end(), step, details)
    log.info("%s: %s", step, json.dumps(details, default=str)[:2000])
    return result
