"""The production-like stack's files agree with each other (nothing here can run docker compose)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_prometheus_scrapes_the_scorer_with_a_key_the_scorer_accepts():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    scrape = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())["scrape_configs"]
    job = next(j for j in scrape if j["job_name"] == "fincoach-scorer")
    [key_file] = job["http_headers"]["X-API-Key"]["files"]
    secret = Path(key_file).name
    assert key_file == f"/run/secrets/{secret}"
    assert secret in compose["services"]["prometheus"]["secrets"]
    source = compose["secrets"][secret]["environment"]
    assert f"${{{source}:?" in compose["services"]["scorer"]["environment"]["FINCOACH_API_KEYS"]
    assert job["static_configs"][0]["targets"] == [f"scorer:{compose['services']['scorer']['environment']['FINCOACH_SCORER_PORT']}"]
