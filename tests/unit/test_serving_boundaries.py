"""Serving stays inside its boundary and refuses settings that would write unusable rows."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from fincoach.settings import reload_settings
from serving.batch import score_all_users


def test_serving_imports_neither_training_nor_pipelines_nor_ray():
    code = (
        "import sys, serving.app, serving.batch, serving.model_loader, serving.online, serving.experiment_analysis; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'training', 'pipelines', 'ray'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


@pytest.fixture()
def settings_env(monkeypatch):
    yield monkeypatch
    monkeypatch.undo()
    reload_settings()


def test_ranking_several_actions_without_exploration_is_refused(settings_env):
    settings_env.setenv("FINCOACH_SERVING_EPSILON", "0")
    settings_env.setenv("FINCOACH_RECOMMENDATIONS_PER_USER", "3")
    reload_settings()

    with pytest.raises(ValueError, match="FINCOACH_SERVING_EPSILON must be in"):
        score_all_users("r", datetime(2026, 1, 1, tzinfo=UTC))


def test_a_naive_generation_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        score_all_users("r", datetime(2026, 1, 1))
