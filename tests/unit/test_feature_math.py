"""The pure arithmetic of the python: features (ratios, caps, priors) and the 30-day window bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from fincoach.feature_spec import FEATURES, GROUPS
from pipelines.feature_math import (
    balance_trend,
    days_to_payday,
    debt_to_income,
    emergency_fund_months,
    goal_pace_ratio,
    nudge_acceptance_rate,
    ratio,
    saving_streak_weeks,
    window_bounds,
)
from pipelines.feature_python import PYTHON_FEATURES, SPEND_CATEGORIES
from pipelines.feature_sql import DBT_FEATURES


def s(*values: float) -> pd.Series:
    return pd.Series(values, dtype="float64")


def test_every_spec_feature_is_computed_exactly_once():
    assert set(DBT_FEATURES).isdisjoint(PYTHON_FEATURES)
    assert sorted(DBT_FEATURES + PYTHON_FEATURES) == sorted(f.name for f in FEATURES)


def test_ratio_uses_the_fallback_when_the_denominator_is_not_positive():
    assert ratio(s(1, 1, 1), s(4, 0, -2), 9.0).tolist() == [0.25, 9.0, 9.0]


def test_emergency_fund_months_is_capped_and_never_negative():
    got = emergency_fund_months(s(3000, 100_000, 500, 0, -200), s(1000, 1000, 0, 0, 1000))
    assert got.tolist() == [3.0, 24.0, 24.0, 0.0, 0.0]


def test_debt_to_income_falls_back_to_declared_income_and_caps_at_five():
    got = debt_to_income(s(12_000, 12_000, 500, 0, 1e9), s(4000, 0, 0, 0, 1000), s(9999, 2000, 0, 0, 1000))
    assert got.tolist() == pytest.approx([0.25, 0.5, 5.0, 0.0, 5.0])


def test_nudge_acceptance_rate_has_a_half_prior():
    assert nudge_acceptance_rate(s(0, 1, 10), s(0, 3, 10)).tolist() == pytest.approx([0.5, 0.4, 11 / 12])


@pytest.mark.parametrize(
    ("as_of", "end"),
    [
        (datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)),
        (datetime(2025, 4, 1, 15, 30, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)),
        # 01:00 at UTC+2 is 23:00 UTC the day before: the window ends at that UTC midnight
        (datetime(2025, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))), datetime(2025, 3, 31, tzinfo=UTC)),
    ],
)
def test_window_is_the_30_complete_utc_days_before_as_of(as_of, end):
    start, got_end = window_bounds(as_of)
    assert got_end == end and got_end <= as_of
    assert got_end - start == timedelta(days=30)


def test_dbt_category_groups_match_the_python_spend_categories():
    import yaml

    from pipelines.analytics_build import DBT_PROJECT_DIR

    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    groups = project["vars"]["essential_categories"] + project["vars"]["discretionary_categories"]
    assert sorted(groups) == sorted(SPEND_CATEGORIES)


def test_every_feature_has_a_known_group_and_v2_appends_to_v1():
    assert {f.group for f in FEATURES} == set(GROUPS)
    names = [f.name for f in FEATURES]
    assert names[:3] == ["monthly_income", "monthly_spend", "savings_rate"] and names[18] == "age"
    assert names[19] == "weekend_spend_share" and names[-1] == "market_return_3m" and len(names) == 41


def test_balance_trend_divides_by_at_least_100_and_clips():
    got = balance_trend(s(500, 50, -10_000, 0), s(1000, 0, 100, 0))
    assert got.tolist() == [0.5, 0.5, -5.0, 0.0]


def test_days_to_payday_counts_down_the_pay_cycle_and_defaults_without_income():
    got = days_to_payday(s(10, 40, np.nan, 3), s(30, 30, 30, 14))
    assert got.tolist() == [20.0, 0.0, 15.0, 11.0]


def test_saving_streak_counts_the_weeks_before_the_first_gap():
    saved = np.array([[True, True, False, True], [False, True, True, True], [True] * 4])
    assert saving_streak_weeks(saved).tolist() == [2.0, 0.0, 4.0]
    assert saving_streak_weeks(np.ones((1, 60), dtype=bool)).tolist() == [52.0]


def test_goal_pace_ratio_compares_pace_so_far_with_the_pace_needed():
    # half way after a quarter of the plan: twice the pace needed; capped at 3; a day-old goal counts one day
    got = goal_pace_ratio(s(0.5, 1.0, 0.0, 0.5), s(25, 10, 50, 0), s(100, 100, 100, 10))
    assert got.tolist() == [2.0, 3.0, 0.0, 3.0]
