"""The scorer's served log: written in batches, kept while Postgres is down, unknown users counted not lost."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from scorer_support import free_port, insert_users

from serving.interaction_log import InteractionLog, Served


def _served(request_id: str, user_id: int, experiment: str | None = None) -> Served:
    return Served(request_id, user_id, 1, "SAVE_MORE", 0.5, "x/1", datetime.now(UTC), experiment,
                  "a" if experiment else None)


def test_rows_wait_while_postgres_is_down_and_are_written_once_it_answers(clean_db):
    insert_users(clean_db, [1, 2])
    down = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    log = InteractionLog(down)
    for i in range(3):
        log.record(_served(f"r{i}", 1 + i % 2))

    assert log.flush() is False and log.pending == 3 and log.pending_nudges(1) == 2
    log.engine = clean_db
    log.record(_served("r-unknown", 999))
    assert log.flush() is True

    with clean_db.connect() as conn:
        logged = conn.execute(sa.text("select request_id from app.coaching_interactions order by 1")).scalars().all()
    assert logged == ["r0", "r1", "r2"]
    assert (log.pending, log.written, log.skipped_unknown_users, log.pending_nudges(1)) == (0, 3, 1, 0)


def test_exposures_are_written_with_the_interactions(clean_db):
    insert_users(clean_db, [1])
    with clean_db.begin() as conn:
        conn.execute(sa.text("insert into serving.experiments (experiment_id) values ('e1')"))
    log = InteractionLog(clean_db)
    log.record(_served("x1", 1, "e1"))
    log.record(_served("x2", 1))

    assert log.flush()

    with clean_db.connect() as conn:
        exposures = conn.execute(sa.text("select request_id, experiment_id, arm from serving.experiment_exposures")).all()
    assert [tuple(e) for e in exposures] == [("x1", "e1", "a")]
