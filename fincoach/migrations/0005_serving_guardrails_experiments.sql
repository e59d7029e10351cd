-- Serving (issue 7): coaching opt-outs, explanations and families on recommendations, A/B experiments.

-- Users who asked for no coaching: the guardrails serve them NO_ACTION only (batch and online).
create table app.coaching_opt_outs (
    user_id            bigint primary key references app.users (user_id) on delete cascade,
    opted_out_at       timestamptz not null default now(),
    reason             text
);

alter table serving.recommendations
    add column family       text not null default 'coaching_nudge',
    add column explanation  text not null default '';

-- A/B experiments: arms are a model alias, a model version or the rule baseline, with traffic shares.
create table serving.experiments (
    experiment_id      text primary key check (experiment_id ~ '^[A-Za-z0-9_.-]+$'),
    description        text not null default '',
    status             text not null default 'running' check (status in ('running', 'stopped')),
    started_at         timestamptz not null default now(),
    stopped_at         timestamptz
);

create table serving.experiment_arms (
    experiment_id      text not null references serving.experiments (experiment_id) on delete cascade,
    arm                text not null,
    kind               text not null check (kind in ('alias', 'version', 'rules')),
    ref                text not null default '',
    traffic_share      double precision not null check (traffic_share > 0 and traffic_share <= 1),
    is_control         boolean not null default false,
    primary key (experiment_id, arm)
);

-- One row per served online recommendation that was part of an experiment (joins the interaction log).
create table serving.experiment_exposures (
    request_id         text primary key,
    experiment_id      text not null references serving.experiments (experiment_id) on delete cascade,
    arm                text not null,
    user_id            bigint not null,
    exposed_at         timestamptz not null
);
create index on serving.experiment_exposures (experiment_id, arm);

-- What each analysis run found, per arm (the control arm's row has no comparison).
create table serving.experiment_results (
    experiment_id      text not null references serving.experiments (experiment_id) on delete cascade,
    analysed_at        timestamptz not null,
    arm                text not null,
    exposures          bigint not null,
    responses          bigint not null,
    accepted           bigint not null,
    acceptance_rate    double precision,
    ci_low             double precision,
    ci_high            double precision,
    diff_vs_control    double precision,
    msprt_p_value      double precision,
    significant        boolean,
    primary key (experiment_id, analysed_at, arm)
);
