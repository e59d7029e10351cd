"""Settings come from the environment, with the architecture page's defaults."""

import pytest

from fincoach import db
from fincoach.settings import Settings, reload_settings


def test_defaults_put_state_under_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("FINCOACH_HOME", "FINCOACH_LAKE_URI", "AIRFLOW_HOME", "FINCOACH_MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.lake == str(tmp_path / ".fincoach" / "lake")
    assert s.airflow_dir == tmp_path / ".fincoach" / "airflow"
    assert s.artifact_root.startswith("file://")


def test_unprefixed_standard_variables_are_honoured(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    s = Settings()
    assert s.ray_address == "ray://head:10001"
    assert s.mlflow_tracking_uri == "http://mlflow:5000"


def test_a_database_url_that_is_not_postgres_is_rejected_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("FINCOACH_DATABASE_URL", "mysql://root@localhost/x")
    reload_settings()
    try:
        with pytest.raises(db.DatabaseConfigError, match="must point at PostgreSQL"):
            db.server_url()
    finally:
        monkeypatch.undo()
        reload_settings()


def test_pseudonyms_are_stable_keyed_and_not_the_id():
    from fincoach.pseudonym import is_pseudonym, pseudonymise, pseudonymise_many

    assert pseudonymise(42, "k1") == pseudonymise("42", "k1")
    assert pseudonymise(42, "k1") != pseudonymise(42, "k2")
    assert pseudonymise(42, "k1") != pseudonymise(43, "k1")
    assert pseudonymise_many([1, 2], "k1") == [pseudonymise(1, "k1"), pseudonymise(2, "k1")]
    assert is_pseudonym(pseudonymise(7)) and not is_pseudonym("7")
