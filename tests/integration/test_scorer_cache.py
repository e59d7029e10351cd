"""The scorer's Redis cache: features, predictions and recommendations cached under versioned keys, optional."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from scorer_support import free_port, insert_users, scorer_process

from fincoach.feature_spec import FEATURE_SPEC_VERSION
from fincoach.rules import RULES_VERSION
from serving.batch import score_all_users


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture()
def redis_prefix():
    """A key prefix of this test alone on the machine's Redis (skips without one); its keys are removed after."""
    if not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379")
    import redis

    prefix = f"fincoach-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379)
    yield prefix, client
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def test_features_predictions_and_recommendations_are_cached_with_versioned_keys(clean_db, tmp_path, redis_prefix):
    prefix, redis_client = redis_prefix
    insert_users(clean_db, [1, 2])
    score_all_users("cache-1", datetime.now(UTC))
    env = {"FINCOACH_REDIS_URL": "redis://127.0.0.1:6379/0", "FINCOACH_CACHE_PREFIX": prefix,
           "FINCOACH_CACHE_TTL_SECONDS": "120", "FINCOACH_MODEL_NAME": f"test-none-{uuid.uuid4().hex[:8]}"}

    with scorer_process(tmp_path / "scorer.log", **env) as client:
        first = client.get("/recommendations/1").json()
        second = client.get("/recommendations/1").json()
        scored = client.post("/score", json={"user_id": 2}).json()
        with clean_db.begin() as conn:  # the cached features answer, not the table
            conn.execute(sa.text("delete from features.user_features_latest where user_id = 2"))
        cached = client.post("/score", json={"user_id": 2})
        metrics = client.get("/metrics").text

    assert (first["from_cache"], second["from_cache"]) == (False, True)
    assert second["recommendations"] == first["recommendations"]
    assert cached.status_code == 200 and cached.json()["model_version"] == scored["model_version"]
    keys = {k.decode() for k in redis_client.scan_iter(f"{prefix}:*")}
    assert keys == {f"{prefix}:recommendations:{FEATURE_SPEC_VERSION}:1", f"{prefix}:features:{FEATURE_SPEC_VERSION}:2",
                    f"{prefix}:scores:{FEATURE_SPEC_VERSION}:{RULES_VERSION}:2"}
    assert all(0 < redis_client.ttl(k) <= 120 for k in keys)
    assert 'fincoach_scorer_cache_total{kind="features",result="hit"} 1.0' in metrics


def test_an_unreachable_redis_only_turns_the_cache_off(clean_db, tmp_path):
    insert_users(clean_db, [1])
    env = {"FINCOACH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "FINCOACH_MODEL_NAME": f"test-none-{uuid.uuid4().hex[:8]}"}

    with scorer_process(tmp_path / "scorer.log", **env) as client:
        answers = [client.post("/score", json={"user_id": 1}) for _ in range(3)]
        ready = client.get("/readyz").json()

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert ready["redis"] is False and ready["database"] is True
