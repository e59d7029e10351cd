-- Operational tables (watermarks, run log, validation results), the online feature store and serving.

create table ops.extract_runs (
    table_name         text not null,
    interval_end       timestamptz not null,
    low_watermark      timestamptz,
    high_watermark     timestamptz not null,
    row_count          bigint not null,
    path               text,
    run_id             text not null,
    extracted_at       timestamptz not null default now(),
    primary key (table_name, interval_end)
);

create table ops.validation_results (
    id                 bigint generated always as identity primary key,
    suite              text not null,
    run_id             text not null,
    success            boolean not null,
    evaluated          integer not null,
    failed             integer not null,
    details            jsonb not null,
    validated_at       timestamptz not null default now()
);

-- What each pipeline step did, per DAG run: the source of `fincoach run`'s summary and of run history.
create table ops.run_log (
    id                 bigint generated always as identity primary key,
    dag_id             text not null,
    run_id             text not null,
    interval_end       timestamptz not null,
    step               text not null,
    details            jsonb not null,
    logged_at          timestamptz not null default now()
);
create index on ops.run_log (interval_end);

-- Latest features per user (online store). Columns follow fincoach.feature_spec (checked by a test).
create table features.user_features_latest (
    user_id                  bigint primary key,
    as_of                    timestamptz not null,
    feature_spec_version     text not null,
    monthly_income           double precision not null,
    monthly_spend            double precision not null,
    savings_rate             double precision not null,
    essential_share          double precision not null,
    discretionary_share      double precision not null,
    spending_volatility      double precision not null,
    impulse_share            double precision not null,
    checking_balance         double precision not null,
    savings_balance          double precision not null,
    emergency_fund_months    double precision not null,
    debt_total               double precision not null,
    debt_to_income           double precision not null,
    max_debt_apr             double precision not null,
    goal_progress            double precision not null,
    has_active_goal          double precision not null,
    sessions_30d             double precision not null,
    days_since_last_session  double precision not null,
    nudge_acceptance_rate    double precision not null,
    age                      double precision not null
);

-- One current set of recommendations per user; swapped in whole by batch scoring.
create table serving.recommendations (
    user_id            bigint not null,
    rank               integer not null check (rank >= 1),
    action_id          integer not null,
    action_type        text not null,
    action_text        text not null,
    parameters         jsonb not null default '{}'::jsonb,
    score              double precision not null,
    propensity         double precision not null check (propensity > 0 and propensity <= 1),
    model_version      text not null,
    run_id             text not null,
    generated_at       timestamptz not null,
    expires_at         timestamptz not null,
    primary key (user_id, rank)
);
