"""Great Expectations gates: the raw extract and the feature snapshot, against the suites in great_expectations/.

Each suite is a version-controlled JSON file under great_expectations/expectations/. Every expectation
carries `meta.severity`: `critical` fails the gate (ValidationFailed, downstream tasks do not run),
`warning` is only recorded. Every suite run is recorded in ops.validation_results before the gate decides.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from fincoach import lake
from fincoach.actions import N_ACTIONS
from fincoach.db import get_engine
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
from pipelines.feature_validation import group_suites
from pipelines.features import KEY_COLUMNS

log = logging.getLogger(__name__)

SUITE_DIR = Path(__file__).resolve().parent.parent / "great_expectations" / "expectations"
RAW_SUITE = "raw_extract"
FEATURES_SUITE = "features"
SEVERITIES = ("critical", "warning")
_MAX_LISTED = 20  # failures named in an exception message


class ValidationFailed(RuntimeError):
    """A critical expectation failed: the data must not go downstream. The message lists what failed."""

    def __init__(self, message: str, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}


class SuiteConfigError(ValueError):
    """An expectation suite file is missing or malformed."""


# --- suites ------------------------------------------------------------------------------------------


def load_suite(name: str) -> dict:
    """The JSON document of suite `name` (great_expectations/expectations/<name>.json)."""
    path = SUITE_DIR / f"{name}.json"
    if not path.exists():
        raise SuiteConfigError(f"no expectation suite {path}")
    return json.loads(path.read_text())


def _expectations(configs: list[dict], where: str) -> list[Any]:
    """GE Expectation objects from JSON configs; a typo or a missing severity is an error, not a skip."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    out = []
    for i, config in enumerate(configs):
        severity = config.get("meta", {}).get("severity")
        if severity not in SEVERITIES:
            raise SuiteConfigError(f"{where}[{i}] ({config.get('type')}): meta.severity must be one of {SEVERITIES}")
        try:
            out.append(ExpectationConfiguration(**config).to_domain_obj())
        except Exception as exc:  # GE raises several types for a bad config; all mean the same here
            raise SuiteConfigError(f"{where}[{i}] is not a valid expectation: {exc}") from exc
    return out


def _context() -> Any:
    """An ephemeral GE context: in-memory stores, no progress bars, nothing written to disk."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_suite(
    ctx: Any, name: str, frame: pd.DataFrame, configs: list[dict], parameters: dict, where: str
) -> list[dict]:
    """Validate `frame` against the expectations `configs` as GE suite `name`; one outcome per expectation."""
    import great_expectations as gx

    asset = ctx.data_sources.add_or_update_pandas("lake").add_dataframe_asset(name=name)
    batch = asset.add_batch_definition_whole_dataframe(f"{name}.whole")
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=_expectations(configs, where)))
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result = definition.run(
        batch_parameters={"dataframe": frame}, expectation_parameters=parameters, result_format="SUMMARY"
    )
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
        details = r.result or {}
        outcome = {
            "expectation": cfg.type,
            "column": kwargs.get("column") or kwargs.get("column_A"),
            "kwargs": kwargs,
            "severity": cfg.meta.get("severity"),
            "success": bool(r.success),
            "unexpected_count": details.get("unexpected_count"),
            "sample": details.get("partial_unexpected_list", [])[:5],
            "observed": details.get("observed_value"),
        }
        error = _exception_message(r.exception_info)
        if error:
            outcome["error"] = error
        outcomes.append(outcome)
    return outcomes


def _exception_message(info: Any) -> str | None:
    """The message of an expectation that could not be evaluated (e.g. a missing column), if any."""
    if not isinstance(info, dict):
        return None
    # either one result-level exception, or one per metric that failed to compute
    infos = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(i.get("exception_message")) for i in infos if i.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages))[:500] or None


# --- results -----------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON (no NaN/inf, which jsonb rejects; numpy and timestamps as numbers and strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _describe(o: dict) -> str:
    where = f"{o['table']}." if o.get("table") else ""
    what = f"{o['expectation']}({where}{o['column'] or 'table'})"
    if o["severity"] != "critical":
        what = f"[{o['severity']}] {what}"
    if o.get("error"):
        return f"{what}: error {o['error']}"
    if o.get("unexpected_count") is not None:
        return f"{what}: {o['unexpected_count']} unexpected, e.g. {o['sample']}"
    return f"{what}: observed {o['observed']}"


def _summarise(suite: str, run_id: str, outcomes: list[dict], extra: dict) -> dict:
    failed = [o for o in outcomes if not o["success"]]
    critical = [o for o in failed if o["severity"] == "critical"]
    return {
        "suite": suite,
        "run_id": run_id,
        "success": not critical,
        "evaluated": len(outcomes),
        "passed": len(outcomes) - len(failed),
        "failed": len(failed),
        "critical_failed": len(critical),
        "warnings": len(failed) - len(critical),
        "failures": [_describe(o) for o in failed][:_MAX_LISTED],
        **extra,
    }


def _record(summary: dict, outcomes: list[dict]) -> None:
    """One row per suite run in ops.validation_results (failed expectations in full in `details`)."""
    details = {
        "critical_failed": summary["critical_failed"],
        "warnings": summary["warnings"],
        "failed_expectations": [o for o in outcomes if not o["success"]],
        **{k: v for k, v in summary.items() if k in {"tables", "skipped", "unchecked_tables", "staging_path", "distribution"}},
    }
    with get_engine().begin() as conn:
        conn.execute(
            sa.text(
                "insert into ops.validation_results (suite, run_id, success, evaluated, failed, details) "
                "values (:suite, :run_id, :success, :evaluated, :failed, cast(:details as jsonb))"
            ),
            {
                "suite": summary["suite"],
                "run_id": summary["run_id"],
                "success": summary["success"],
                "evaluated": summary["evaluated"],
                "failed": summary["failed"],
                "details": json.dumps(_jsonable(details)),
            },
        )


def _gate(summary: dict, outcomes: list[dict]) -> dict:
    """Record the run, then raise ValidationFailed if a critical expectation failed."""
    _record(summary, outcomes)
    log.info(
        "%(suite)s: %(passed)d/%(evaluated)d passed, %(critical_failed)d critical, %(warnings)d warnings", summary
    )
    if not summary["success"]:
        listed = "; ".join(_describe(o) for o in outcomes if not o["success"] and o["severity"] == "critical")
        raise ValidationFailed(
            f"suite {summary['suite']} (run {summary['run_id']}): {summary['critical_failed']} critical "
            f"expectation(s) failed: {listed}. Nothing downstream runs until the data is fixed; the full "
            "result is in ops.validation_results.",
            summary,
        )
    return summary


def _read_frame(path: str) -> pd.DataFrame:
    """A lake file as pandas, decimals as float64 (GE compares numbers, not Decimal objects)."""
    root = lake.uri("")
    table = lake.read_table(path.removeprefix(root) if path.startswith(root) else path)
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type):
            table = table.set_column(i, field.name, pc.cast(table.column(i), pa.float64()))
    return table.to_pandas()


# --- the gates ---------------------------------------------------------------------------------------


def validate_raw(extract_result: dict, run_id: str) -> dict:
    """Validate each extracted table file against its part of the raw suite; record; raise on critical."""
    started = time.perf_counter()
    suite = load_suite(RAW_SUITE)
    parts: dict[str, list[dict]] = suite["tables"]
    parameters = {"max_action_id": N_ACTIONS - 1}
    ctx = _context()
    outcomes: list[dict] = []
    tables: dict[str, dict] = {}
    skipped, unchecked = [], []
    for table, info in sorted(extract_result.items()):
        info = info if isinstance(info, dict) else {}
        paths = info.get("paths") or ([info["path"]] if info.get("path") else [])  # every hour file of the extract
        if table not in parts:
            unchecked.append(table)
            continue
        if not paths:
            skipped.append(table)
            continue
        frame = pd.concat([_read_frame(p) for p in paths], ignore_index=True)
        table_outcomes = _run_suite(ctx, f"{RAW_SUITE}.{table}", frame, parts[table], parameters, f"{RAW_SUITE}.{table}")
        for o in table_outcomes:
            o["table"] = table
        outcomes += table_outcomes
        tables[table] = {
            "rows": len(frame),
            "evaluated": len(table_outcomes),
            "failed": sum(not o["success"] for o in table_outcomes),
        }
    extra = {
        "tables": tables, "skipped": skipped, "unchecked_tables": unchecked,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return _gate(_summarise(RAW_SUITE, run_id, outcomes, extra), outcomes)


def validate_features(build_result: dict, run_id: str) -> dict:
    """Validate a staged feature snapshot: the table suite, then one suite per feature group; record; raise on critical."""
    started = time.perf_counter()
    suite = load_suite(FEATURES_SUITE)
    frame = _read_frame(build_result["staging_path"])
    parameters = {
        "snapshot_columns": [*KEY_COLUMNS, *FEATURE_NAMES],
        "feature_spec_versions": [FEATURE_SPEC_VERSION],
    }
    ctx = _context()
    outcomes = _run_suite(ctx, FEATURES_SUITE, frame, suite["expectations"], parameters, FEATURES_SUITE)
    as_of = datetime.fromisoformat(build_result["as_of"]) if build_result.get("as_of") else datetime.now(UTC)
    groups, distribution = group_suites(load_suite, as_of, len(frame))
    tables: dict[str, dict] = {}
    for name, configs in groups:
        group_outcomes = _run_suite(ctx, name, frame, configs, parameters, name)
        for o in group_outcomes:
            o["table"] = name
        outcomes += group_outcomes
        tables[name] = {"evaluated": len(group_outcomes), "failed": sum(not o["success"] for o in group_outcomes)}
    extra = {
        "rows": len(frame),
        "staging_path": build_result["staging_path"],
        "tables": tables,
        "distribution": distribution,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return _gate(_summarise(FEATURES_SUITE, run_id, outcomes, extra), outcomes)
