"""The synthetic generator: deterministic, consistent money, realistic patterns, a usable coaching log."""

from __future__ import annotations

import datetime as dt
import re
import time

import numpy as np
import pandas as pd
import pytest

from fincoach.actions import ACTIONS, N_ACTIONS
from fincoach.migrate import migration_files
from pipelines.synthetic import CATEGORIES, DEBT_APR, LOGGING_MODEL_VERSION, TABLES, generate, simulate

END = dt.date(2026, 3, 1)
START = pd.Timestamp("2025-12-01", tz="UTC")  # 90 days before END: December, January, February


@pytest.fixture(scope="module")
def sim():
    return simulate(400, 90, 11, END)


@pytest.fixture(scope="module")
def frames(sim):
    return sim.frames


def _ddl_columns() -> dict[str, list[str]]:
    sql = "\n".join(text for name, text in migration_files() if name.startswith("0001"))
    out = {}
    for table, body in re.findall(r"create table app\.(\w+) \((.*?)\n\);", sql, flags=re.S):
        names = [line.split()[0].strip('"') for line in body.strip().splitlines() if line.strip()]
        out[table] = [n for n in names if n not in ("primary", "unique", "check", "foreign")]
    return out


def test_frames_have_the_ddl_columns_except_updated_at(frames):
    ddl = _ddl_columns()
    assert set(frames) == set(TABLES) == set(ddl)
    for table, cols in ddl.items():
        assert list(frames[table].columns) == [c for c in cols if c != "updated_at"], table


def test_same_arguments_give_identical_frames():
    a, b = generate(30, 14, 5, END), generate(30, 14, 5, END)
    for table in TABLES:
        pd.testing.assert_frame_equal(a[table], b[table], obj=table)


def test_different_seeds_give_different_data():
    a, b = generate(30, 14, 5, END), generate(30, 14, 6, END)
    assert not a["users"]["monthly_income"].equals(b["users"]["monthly_income"])
    assert len(a["transactions"]) != len(b["transactions"]) or not a["transactions"]["amount"].equals(
        b["transactions"]["amount"]
    )


def test_ids_run_from_one_and_unique_keys_are_unique(frames):
    for table in TABLES:
        ids = frames[table].iloc[:, 0].to_numpy()
        assert (ids == np.arange(1, len(ids) + 1)).all(), table
    assert frames["user_sessions"]["session_id"].is_unique
    assert frames["coaching_interactions"]["request_id"].is_unique


def test_foreign_keys_point_at_existing_rows(frames):
    users = set(frames["users"]["user_id"])
    for table in TABLES[1:]:
        assert set(frames[table]["user_id"]) <= users, table
    accounts = frames["accounts"].set_index("account_id")["user_id"]
    tx = frames["transactions"]
    assert (accounts.loc[tx["account_id"]].to_numpy() == tx["user_id"].to_numpy()).all()
    sessions = set(frames["user_sessions"]["session_id"])
    assert set(frames["user_events"]["session_id"]) <= sessions


def test_every_timestamp_is_utc_and_inside_the_period(frames):
    end = pd.Timestamp(END, tz="UTC")
    for table, col in [("transactions", "occurred_at"), ("user_events", "timestamp"), ("user_sessions", "start_time"),
                       ("coaching_interactions", "served_at"), ("financial_decisions", "timestamp")]:
        ts = frames[table][col]
        assert str(ts.dt.tz) == "UTC", (table, col)
        assert ts.min() >= START and ts.max() < end, (table, col)
    assert str(frames["users"]["created_at"].dt.tz) == "UTC"
    assert (frames["users"]["created_at"] < START).all()


def test_account_balances_equal_opening_balance_plus_flows(sim):
    flows = sim.frames["transactions"].groupby("account_id")["amount"].sum()
    acc = sim.frames["accounts"].set_index("account_id")
    expected = sim.opening_balance.add(flows, fill_value=0)
    np.testing.assert_allclose(acc["current_balance"].to_numpy(), expected.loc[acc.index].to_numpy(), atol=0.005)


def test_credit_card_debt_is_what_the_card_account_owes(frames):
    acc = frames["accounts"]
    cards = acc[acc["account_type"] == "credit_card"].set_index("user_id")["current_balance"]
    debts = frames["debts"]
    card_debt = debts[debts["debt_type"] == "credit_card"].set_index("user_id")["balance"]
    assert set(cards.index) == set(card_debt.index)
    np.testing.assert_allclose(card_debt.loc[cards.index], np.maximum(0, -cards), atol=0.005)


def test_every_category_comes_from_the_constant(frames):
    assert set(frames["transactions"]["category"]) <= set(CATEGORIES)
    assert set(frames["transactions"]["category"]) == set(CATEGORIES)  # all of them occur in 90 days


def test_savings_transfers_come_in_pairs_that_net_to_zero(frames):
    tx = frames["transactions"]
    kinds = frames["accounts"].set_index("account_id")["account_type"]
    st = tx[tx["category"] == "savings_transfer"]
    assert set(kinds.loc[st.loc[st["amount"] < 0, "account_id"]]) == {"checking"}
    assert set(kinds.loc[st.loc[st["amount"] > 0, "account_id"]]) == {"savings"}
    net = st.groupby(["user_id", "occurred_at"])["amount"].sum()
    assert (net.abs() < 0.005).all()


def test_monthly_earners_are_paid_once_a_month_on_a_fixed_day(frames):
    users = frames["users"].set_index("user_id")
    pay = frames["transactions"].query("category == 'income'")
    monthly = pay[pay["user_id"].map(users["pay_frequency"]) == "monthly"]
    per_month = monthly.groupby(["user_id", monthly["occurred_at"].dt.month]).size()
    assert (per_month == 1).all()
    assert (monthly.groupby("user_id")["occurred_at"].agg(lambda s: s.dt.day.nunique()) == 1).all()
    assert (monthly.groupby("user_id").size() == 3).all()  # December, January, February
    np.testing.assert_allclose(monthly["amount"], monthly["user_id"].map(users["monthly_income"]))


def test_biweekly_earners_are_paid_every_14_days_on_the_same_weekday(frames):
    users = frames["users"].set_index("user_id")
    pay = frames["transactions"].query("category == 'income'")
    bi = pay[pay["user_id"].map(users["pay_frequency"]) == "biweekly"]
    gaps = bi.groupby("user_id")["occurred_at"].agg(lambda s: set(s.dt.normalize().diff().dropna().dt.days))
    assert gaps.map(lambda g: g == {14}).all()
    assert (bi.groupby("user_id").size().isin([6, 7])).all()  # 90 days hold 6 or 7 biweekly paydays


def test_impulsive_users_make_more_impulse_purchases(sim):
    tx = sim.frames["transactions"]
    counts = tx[tx["is_impulse"]].groupby("user_id").size().reindex(sim.traits["user_id"], fill_value=0)
    impulsivity = sim.traits.set_index("user_id")["impulsivity"]
    top, bottom = impulsivity >= impulsivity.quantile(0.75), impulsivity <= impulsivity.quantile(0.25)
    assert counts[top].mean() > 3 * counts[bottom].mean()
    assert set(tx.loc[tx["is_impulse"], "category"]) <= {"shopping", "dining", "entertainment"}
    assert (tx.loc[tx["is_impulse"], "amount"] < 0).all()


def test_coaching_log_is_a_uniform_random_policy_with_propensity_one_over_n(frames):
    ci = frames["coaching_interactions"]
    assert (ci["propensity"] == 1.0 / N_ACTIONS).all()
    assert (ci["model_version"] == LOGGING_MODEL_VERSION).all() and (ci["source"] == "historical").all()
    assert (ci["request_id"] == "hist-" + ci["id"].astype(str)).all()
    shares = ci["action_id"].value_counts(normalize=True).reindex(range(N_ACTIONS), fill_value=0)
    assert (shares - 1 / N_ACTIONS).abs().max() < 0.03
    per_user_week = len(ci) / len(frames["users"]) / (90 / 7)
    assert 0.8 < per_user_week < 1.2


def test_responses_come_after_serving_and_only_the_latest_are_open(frames):
    ci = frames["coaching_interactions"]
    answered = ci["response"].notna()
    assert set(ci.loc[answered, "response"]) == {"accepted", "dismissed", "ignored"}
    assert (ci.loc[answered, "responded_at"] > ci.loc[answered, "served_at"]).all()
    assert ci.loc[~answered, "responded_at"].isna().all()
    assert (ci.loc[~answered, "served_at"] >= pd.Timestamp(END, tz="UTC") - pd.Timedelta(days=3)).all()
    assert (ci.loc[ci["action_id"] == 0, "response"].dropna() == "ignored").all()  # NO_ACTION shows nothing


def test_accepted_savings_nudges_are_followed_by_a_savings_transfer(frames):
    ci, tx, acc = frames["coaching_interactions"], frames["transactions"], frames["accounts"]
    savings = set(acc.loc[acc["account_type"] == "savings", "account_id"])
    deposits = tx[(tx["category"] == "savings_transfer") & tx["account_id"].isin(savings)]
    nudges = ci[ci["action_type"].isin(["SAVE_MORE", "BUILD_EMERGENCY_FUND"])
                & (ci["served_at"] < pd.Timestamp(END, tz="UTC") - pd.Timedelta(days=5))]
    pairs = nudges.merge(deposits[["user_id", "occurred_at"]], on="user_id", how="left")
    pairs["hit"] = (pairs["occurred_at"] > pairs["served_at"]) & (
        pairs["occurred_at"] <= pairs["served_at"] + pd.Timedelta(days=4))
    hit = pairs.groupby("id")["hit"].any()
    accepted = nudges.set_index("id")["response"] == "accepted"
    assert accepted.sum() > 30
    assert hit[accepted].mean() > 0.75
    assert hit[accepted].mean() > hit[~accepted].mean() + 0.4


def test_accepted_reduce_spending_lowers_that_category_the_next_week(frames):
    ci, tx = frames["coaching_interactions"], frames["transactions"]
    nudges = ci[(ci["action_type"] == "REDUCE_SPENDING")
                & ci["served_at"].between(START + pd.Timedelta(days=14), pd.Timestamp(END, tz="UTC") - pd.Timedelta(days=9))]
    category = {a.id: a.category for a in ACTIONS if a.type == "REDUCE_SPENDING"}
    ratio = {}
    for accepted in (True, False):
        after = before = 0.0
        for r in nudges[(nudges["response"] == "accepted") == accepted].itertuples():
            spend = tx[(tx["user_id"] == r.user_id) & (tx["category"] == category[r.action_id])]
            day = r.responded_at.normalize() + pd.Timedelta(days=1)
            after -= spend.loc[spend["occurred_at"].between(day, day + pd.Timedelta(days=7), inclusive="left"), "amount"].sum()
            before -= spend.loc[spend["occurred_at"].between(day - pd.Timedelta(days=14), day - pd.Timedelta(days=7),
                                                             inclusive="left"), "amount"].sum()
        ratio[accepted] = after / before
    assert ratio[True] < 0.75 < ratio[False]


def test_debts_cover_about_45_percent_of_users_with_aprs_in_range(frames):
    debts = frames["debts"]
    assert 0.35 < debts["user_id"].nunique() / len(frames["users"]) < 0.55
    for kind, (lo, hi) in DEBT_APR.items():
        apr = debts.loc[debts["debt_type"] == kind, "apr"]
        assert len(apr) and apr.between(lo, hi).all(), kind


def test_users_who_opted_out_of_tracking_have_no_events(frames):
    users = frames["users"]
    opted = set(users.loc[users["tracking_opt_out"], "user_id"])
    assert 0 < len(opted) < 0.08 * len(users)
    assert not opted & set(frames["user_events"]["user_id"])
    assert not opted & set(frames["user_sessions"]["user_id"])


def test_sessions_count_their_events_and_list_their_pages(frames):
    ev, sess = frames["user_events"], frames["user_sessions"]
    counts = ev.groupby("session_id").size()
    assert (sess.set_index("session_id")["actions_count"] == counts.reindex(sess["session_id"]).to_numpy()).all()
    assert sess["pages_visited"].map(lambda p: isinstance(p, list) and len(p) > 0).all()
    assert set(ev["event_type"]) == {"page_view", "click", "budget_view", "goal_update", "nudge_view"}
    assert ev["context"].map(lambda c: set(c) == {"device", "app_version"}).all()


def test_generates_300_users_by_28_days_within_3_seconds():
    started = time.perf_counter()
    generate(300, 28, 1, END)
    assert time.perf_counter() - started < 3.0
