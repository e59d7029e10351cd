-- Data collection and privacy (issue 5): client event ids for idempotent ingestion, ingestion counts
-- (consent: opted-out events are counted, never stored), quarantine counts per extract run,
-- the pseudonym mapping (it stays in Postgres only) and the right-to-erasure queue.

-- The id a client gives each event: a retry of the same event is stored once.
alter table app.user_events add column client_event_id text unique;
alter table app.financial_decisions add column client_event_id text unique;

-- What POST /events did with the events it received, per UTC day and outcome
-- (stored, duplicate, opted_out, rejected).
create table ops.ingest_counts (
    day                date not null,
    outcome            text not null,
    events             bigint not null,
    updated_at         timestamptz not null default now(),
    primary key (day, outcome)
);

-- One row per table and extract interval: rows read = rows accepted into raw/ + rows quarantined.
create table ops.quarantine_counts (
    table_name         text not null,
    interval_end       timestamptz not null,
    run_id             text not null,
    extracted          bigint not null,
    accepted           bigint not null,
    quarantined        bigint not null,
    reasons            jsonb not null default '{}'::jsonb,
    recorded_at        timestamptz not null default now(),
    primary key (table_name, interval_end),
    check (extracted = accepted + quarantined)
);

-- user id -> pseudonym used in the lake and MLflow; never exported.
create table ops.user_pseudonyms (
    user_id            bigint primary key,
    pseudonym          text not null unique,
    created_at         timestamptz not null default now()
);

-- Right to erasure: a request is processed once (processed_at set), with what was removed in details.
create table ops.erasure_requests (
    id                 bigint generated always as identity primary key,
    user_id            bigint not null,
    requested_at       timestamptz not null default now(),
    processed_at       timestamptz,
    details            jsonb not null default '{}'::jsonb
);
create index on ops.erasure_requests (user_id) where processed_at is null;
