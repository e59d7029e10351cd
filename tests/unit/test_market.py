"""The synthetic market process: deterministic, regime-switching, with the ranges app.market_conditions accepts."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from pipelines.market import LEAD_DAYS, REGIMES, generate_market


def test_same_arguments_give_the_same_path_and_days_end_before_end():
    end = dt.date(2025, 6, 1)
    a, b = generate_market(400, 3, end), generate_market(400, 3, end)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 400 + LEAD_DAYS and a.day.iloc[-1] == end - dt.timedelta(days=1)
    assert a.day.is_unique and a.day.is_monotonic_increasing


def test_regimes_switch_and_shape_rates_and_returns():
    frame = generate_market(3000, 11, dt.date(2030, 1, 1))
    assert set(frame.regime) == set(REGIMES)
    by = frame.groupby("regime")
    assert by.interest_rate.mean()["tight"] > by.interest_rate.mean()["calm"] > by.interest_rate.mean()["crisis"]
    daily = frame.index_level.pct_change().groupby(frame.regime).std()
    assert daily["crisis"] > daily["calm"]
    assert (frame.interest_rate >= 0).all() and (frame.index_level > 0).all()
    assert frame.inflation_rate.between(-0.5, 5).all()
