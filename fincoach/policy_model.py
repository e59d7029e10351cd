"""How an exported policy is stored in MLflow: logged as a pyfunc model holding policy.pt + meta.json.

Training logs with `log_policy`; serving loads with `load_registered_policy`. Neither needs the other's code.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from fincoach.policy import ExportedPolicy

ARTIFACT_KEY = "policy_dir"


class PolicyPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc face of an exported policy: predict(raw feature matrix) → greedy action ids."""

    def load_context(self, context: Any) -> None:
        self.policy = ExportedPolicy.load(context.artifacts[ARTIFACT_KEY])

    def __getstate__(self) -> dict:
        """Pickle without the loaded policy (MLflow loads it to infer the signature; TorchScript cannot pickle)."""
        return {k: v for k, v in self.__dict__.items() if k != "policy"}

    def predict(self, context: Any, model_input: Any, params: dict | None = None) -> np.ndarray:
        from fincoach.feature_spec import raw_matrix

        return self.policy.act(raw_matrix(model_input)).actions


def log_policy(folder: str | Path, input_example: Any, name: str = "policy") -> Any:
    """Log the policy folder (from write_policy_artifact) as a pyfunc model in the active run."""
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=PolicyPyfunc(),
        artifacts={ARTIFACT_KEY: str(folder)},
        input_example=input_example,
    )


def load_registered_policy(model_uri: str) -> ExportedPolicy:
    """Download a registered model (e.g. models:/fincoach-coach@champion) and load its policy, without Ray."""
    with tempfile.TemporaryDirectory(prefix="fincoach-policy-") as dst:  # the policy is in memory once loaded
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst)
        policy = ExportedPolicy.load(local)
    policy.version = _registered_version(model_uri)
    return policy


def _registered_version(model_uri: str) -> str:
    """"<name>/<version>" of a models:/ URI (alias resolved), or the URI itself for other kinds."""
    ref = model_uri.removeprefix("models:/")
    if ref == model_uri:
        return model_uri
    client = mlflow.MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return f"{name}/{client.get_model_version_by_alias(name, alias).version}"
    return ref
