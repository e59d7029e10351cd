"""The feature spec version follows its content, and a policy of another spec version is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fincoach import feature_spec
from fincoach.actions import N_ACTIONS
from fincoach.policy import META_FILE, ExportedPolicy, IncompatibleModelError, write_policy_artifact


def test_any_change_of_a_feature_gives_a_new_version(monkeypatch):
    base = feature_spec._version()
    renormalised = list(feature_spec.FEATURES)
    renormalised[-1] = dataclasses.replace(renormalised[-1], scale=0.2)
    monkeypatch.setattr(feature_spec, "FEATURES", tuple(renormalised))
    assert feature_spec._version() != base
    monkeypatch.setattr(feature_spec, "FEATURES", feature_spec.FEATURES[:19])  # the v1 list
    assert feature_spec._version() not in {base, feature_spec.FEATURE_SPEC_VERSION}


def test_a_policy_trained_on_the_v1_spec_is_refused_with_a_clear_error(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.jit.script(torch.nn.Linear(feature_spec.N_FEATURES, N_ACTIONS))
    folder = write_policy_artifact(tmp_path / "policy", module, {"run_id": "r"})
    assert ExportedPolicy.load(folder).action_scores(
        torch.zeros(1, feature_spec.N_FEATURES).numpy()
    ).shape == (1, N_ACTIONS)
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "feature_spec_version": "v1-0123abcd"}))
    with pytest.raises(IncompatibleModelError, match=f"feature spec v1-0123abcd, this code serves {feature_spec.FEATURE_SPEC_VERSION}"):
        ExportedPolicy.load(folder)
