"""The DAGs parse in Airflow itself, with no import error and nothing heavy imported at top level."""

import json
import os
import subprocess
import sys

from fincoach.airflow_env import DAGS_FOLDER, airflow_environment

_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
heavy = sorted(m for m in ("torch", "ray", "great_expectations", "mlflow", "dbt", "sklearn") if m in sys.modules)
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "heavy": heavy,
                  "tasks": {d: sorted(t.task_id for t in bag.dags[d].tasks) for d in bag.dag_ids}}))
"""


def _parse(engine) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(DAGS_FOLDER)],
        env={**os.environ, **airflow_environment()}, capture_output=True, text=True, check=False, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dagbag_loads_the_four_dags_without_import_errors_or_heavy_imports(engine):
    parsed = _parse(engine)
    assert parsed["errors"] == {}
    assert parsed["dags"] == [
        "fincoach_hourly", "fincoach_monitoring", "fincoach_recommendations", "fincoach_training"
    ]
    assert parsed["heavy"] == []
    assert parsed["tasks"]["fincoach_hourly"] == sorted(
        ["process_erasures", "build_sessions", "extract", "validate_raw", "dbt_build", "build_features",
         "validate_features", "publish_features", "feature_predictiveness"]
    )
