-- Feature spec v2 (issue 3): the new feature columns of the online store, the market-conditions source,
-- and the predictiveness report analysts query. Safe on a database that already holds 0001/0002 data:
-- existing online rows get each new feature's spec default until the next hourly refresh replaces them.

alter table features.user_features_latest
    add column weekend_spend_share      double precision not null default 0.0,
    add column month_end_spend_share    double precision not null default 0.0,
    add column spend_trend              double precision not null default 1.0,
    add column days_to_payday           double precision not null default 15.0,
    add column spending_velocity        double precision not null default 1.0,
    add column balance_trend            double precision not null default 0.0,
    add column dining_share             double precision not null default 0.0,
    add column shopping_share           double precision not null default 0.0,
    add column avg_session_minutes      double precision not null default 0.0,
    add column features_used_30d        double precision not null default 0.0,
    add column clicks_per_session       double precision not null default 0.0,
    add column saving_streak_weeks      double precision not null default 0.0,
    add column mobile_device            double precision not null default 0.0,
    add column evening_session_share    double precision not null default 0.0,
    add column goal_pace_ratio          double precision not null default 1.0,
    add column goals_achieved           double precision not null default 0.0,
    add column risk_tolerance           double precision not null default 0.5,
    add column nudges_7d                double precision not null default 0.0,
    add column days_since_last_nudge    double precision not null default 90.0,
    add column market_interest_rate     double precision not null default 0.03,
    add column market_inflation_rate    double precision not null default 0.025,
    add column market_return_3m         double precision not null default 0.0;

-- Exogenous market conditions, one row per day, the same for every user (filled by pipelines.market).
create table app.market_conditions (
    day                date primary key,
    regime             text not null check (regime in ('calm', 'tight', 'crisis')),
    interest_rate      double precision not null check (interest_rate > -0.05 and interest_rate < 1),
    inflation_rate     double precision not null check (inflation_rate > -0.5 and inflation_rate < 5),
    index_level        double precision not null check (index_level > 0),
    updated_at         timestamptz not null default now()
);
create trigger touch_updated_at before update on app.market_conditions
    for each row execute function app.touch_updated_at();
create index on app.market_conditions (updated_at);

-- How predictive each feature of a snapshot was of what happened in the 30 days after its as_of.
create table features.predictiveness (
    as_of                  timestamptz not null,
    feature_spec_version   text not null,
    feature                text not null,
    feature_group          text not null,
    outcome                text not null,
    n_users                integer not null,
    pearson                double precision,
    spearman               double precision,
    mutual_information     double precision not null,
    run_id                 text not null,
    computed_at            timestamptz not null default now(),
    primary key (as_of, feature_spec_version, feature, outcome)
);

-- Feature store bookkeeping: which user rows changed since a snapshot (incremental hourly refresh).
create table features.snapshot_runs (
    as_of                  timestamptz primary key,
    feature_spec_version   text not null,
    mode                   text not null check (mode in ('full', 'incremental')),
    users_total            integer not null,
    users_recomputed       integer not null,
    relpath                text not null,
    run_id                 text not null,
    published_at           timestamptz not null default now()
);

-- Event-time indexes: the hourly incremental feature refresh finds the users whose rows cross a window
-- boundary (a session leaving the 30-day window, ...) by range scans on these, not by reading the history.
create index on app.transactions (occurred_at);
create index on app.user_sessions (start_time);
create index on app.user_sessions (end_time);
create index on app.user_events ("timestamp");
create index on app.coaching_interactions (served_at);
