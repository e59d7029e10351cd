import sqlalchemy as sa

from fincoach.feature_spec import FEATURE_NAMES
from fincoach.migrate import migrate


def test_migrations_are_rerunnable(engine):
    assert migrate(engine) == []


def test_online_feature_table_matches_the_spec(engine):
    with engine.connect() as conn:
        cols = conn.execute(
            sa.text(
                "select column_name from information_schema.columns "
                "where table_schema = 'features' and table_name = 'user_features_latest' order by ordinal_position"
            )
        ).scalars().all()
    assert tuple(cols[3:]) == FEATURE_NAMES
    assert cols[:3] == ["user_id", "as_of", "feature_spec_version"]


def test_all_schemas_exist(engine):
    with engine.connect() as conn:
        names = set(conn.execute(sa.text("select schema_name from information_schema.schemata")).scalars())
    assert {"app", "analytics", "features", "serving", "ops"} <= names
