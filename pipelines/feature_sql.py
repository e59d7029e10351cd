"""The `dbt:` features: one SQL window over analytics.fct_daily_user_financials (UTC-day grain).

They use the 30 complete UTC days before as_of (exactly the 30 days ending at as_of when as_of is
midnight), so a mid-day as_of never sees part of a later day; spend_trend also reads the 60 days before
those, spending_velocity the last 7 of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from fincoach.feature_spec import FEATURES
from pipelines.feature_math import window_bounds
from pipelines.feature_python import Reader

DBT_FEATURES = tuple(f.name for f in FEATURES if f.source.startswith("dbt:"))
TREND_HISTORY_DAYS = 60
VELOCITY_DAYS = 7
RATIO_CAP = 5.0

_SQL = """
with

history_days as (
    select
        user_id,
        date_day,
        income::float8 as income,
        spend_total::float8 as spend,
        spend_essential::float8 as spend_essential,
        spend_discretionary::float8 as spend_discretionary,
        spend_dining::float8 as spend_dining,
        spend_shopping::float8 as spend_shopping
    from analytics.fct_daily_user_financials
    where date_day >= :history_start and date_day < :window_end
      {users}
),

-- the first day of activity is all the mart knows before a window: it starts at the first transaction
first_days as (
    select
        user_id,
        first_transaction_date as first_date_day
    from analytics.dim_users
    where first_transaction_date < :window_end
),

totals as (
    select
        history_days.user_id,
        coalesce(sum(income) filter (where in_window), 0) as income,
        coalesce(sum(spend) filter (where in_window), 0) as spend,
        coalesce(sum(spend_essential) filter (where in_window), 0) as spend_essential,
        coalesce(sum(spend_discretionary) filter (where in_window), 0) as spend_discretionary,
        coalesce(sum(spend_dining) filter (where in_window), 0) as spend_dining,
        coalesce(sum(spend_shopping) filter (where in_window), 0) as spend_shopping,
        coalesce(sum(spend * spend) filter (where in_window), 0) as spend_squared,
        coalesce(sum(spend) filter (where in_window and extract(isodow from date_day) >= 6), 0) as spend_weekend,
        coalesce(sum(spend) filter (
            where in_window and date_trunc('month', date_day + 7) > date_trunc('month', date_day)
        ), 0) as spend_month_end,
        coalesce(sum(spend) filter (where date_day >= :velocity_start), 0) as spend_recent,
        coalesce(sum(spend) filter (where not in_window), 0) as spend_prior,
        -- days the user was already active: days after their last transaction count as 0
        (:window_end - greatest(min(first_days.first_date_day), :window_start))::float8 as active_days,
        (:window_start - greatest(min(first_days.first_date_day), :history_start))::float8 as prior_days
    from (
        select *, date_day >= :window_start as in_window from history_days
    ) as history_days
    inner join first_days
        on history_days.user_id = first_days.user_id
    group by history_days.user_id
),

daily_stats as (
    select
        *,
        case when active_days > 0 then spend / active_days else 0 end as mean_spend,
        case
            when active_days > 0
                then sqrt(greatest(spend_squared / active_days - (spend / active_days) ^ 2, 0))
            else 0
        end as sd_spend,
        case when prior_days > 0 then spend_prior * 30 / prior_days end as prior_monthly_spend
    from totals
)

select
    user_id,
    greatest(income, 0) as monthly_income,
    greatest(spend, 0) as monthly_spend,
    case
        when income > 0 then least(greatest((income - spend) / income, -1), 1)
        when spend > 0 then -1
        else 0
    end as savings_rate,
    case when spend > 0 then least(greatest(spend_essential / spend, 0), 1) else 0 end as essential_share,
    case when spend > 0 then least(greatest(spend_discretionary / spend, 0), 1) else 0 end as discretionary_share,
    case when mean_spend > 0 then sd_spend / mean_spend else 0 end as spending_volatility,
    case when spend > 0 then least(greatest(spend_weekend / spend, 0), 1) else 0 end as weekend_spend_share,
    case when spend > 0 then least(greatest(spend_month_end / spend, 0), 1) else 0 end as month_end_spend_share,
    case
        when prior_monthly_spend is null then 1
        when prior_monthly_spend > 0 then least(greatest(spend, 0) / prior_monthly_spend, :cap)
        when spend > 0 then :cap
        else 1
    end as spend_trend,
    case
        when spend > 0 then least(greatest(spend_recent * 30 / :velocity_days / spend, 0), :cap)
        else 1
    end as spending_velocity,
    case when spend > 0 then least(greatest(spend_dining / spend, 0), 1) else 0 end as dining_share,
    case when spend > 0 then least(greatest(spend_shopping / spend, 0), 1) else 0 end as shopping_share
from daily_stats
"""


def dbt_features(q: Reader, as_of: datetime) -> pd.DataFrame:
    """The dbt: features as of `as_of` of the users of `q`, indexed by user_id (users without a row in the
    windows are absent)."""
    start, end = window_bounds(as_of)
    params: dict[str, object] = {
        "history_start": (start - timedelta(days=TREND_HISTORY_DAYS)).date(),
        "window_start": start.date(),
        "window_end": end.date(),
        "velocity_start": (end - timedelta(days=VELOCITY_DAYS)).date(),
        "velocity_days": float(VELOCITY_DAYS),
        "cap": RATIO_CAP,
    }
    frame = q(_SQL, **params)
    return frame.set_index("user_id")[list(DBT_FEATURES)]
