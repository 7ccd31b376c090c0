-- crontick's PostgreSQL schema, version 1. Applied once by storage.postgres.apply_migrations
-- (under pg_advisory_lock, recorded in schema_migrations); never edit an applied migration:
-- add 0002_....sql instead (the runner refuses a changed checksum).

-- One row per job: the Job fields as typed columns (storage/postgres.py maps them one to one).
CREATE TABLE crontick_jobs (
    id                    text COLLATE "C" PRIMARY KEY,  -- byte order: list_jobs pages by id as Python sorts
    job_type              text NOT NULL,
    payload               json NOT NULL,          -- json, not jsonb: kept byte for byte (1.5e308 stays a float)
    status                text NOT NULL CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    next_run_at           timestamptz,
    fire_at               timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    schedule_at           timestamptz,
    cron                  text,
    interval_seconds      bigint,
    timezone              text NOT NULL,
    misfire               text NOT NULL,
    misfire_grace_seconds bigint NOT NULL,
    overlap               text NOT NULL,
    max_attempts          bigint NOT NULL,
    timeout_seconds       double precision,
    attempts              bigint NOT NULL,
    last_run_at           timestamptz,
    last_outcome          text,
    last_error            text,
    created_by            text,
    idempotency_key       text UNIQUE,            -- add_job's "existing key returns the existing job"
    lease_owner           text,
    lease_until           timestamptz,
    lease_epoch           bigint NOT NULL,
    -- Job fields without a column of their own (today: audit), as Job.to_dict writes them:
    -- a field added to Job later round-trips here until a migration gives it a column.
    extra                 json NOT NULL DEFAULT '{}'
);

-- The due query reads only these two partial indexes (never the finished or future rows' heap):
--   status = 'pending' AND next_run_at <= now        -> crontick_jobs_pending_due
--   status = 'running' AND lease_until <= now        -> crontick_jobs_running_lease
CREATE INDEX crontick_jobs_pending_due ON crontick_jobs (next_run_at, id) WHERE status = 'pending';
CREATE INDEX crontick_jobs_running_lease ON crontick_jobs (lease_until) WHERE status = 'running';
CREATE INDEX crontick_jobs_status ON crontick_jobs (status, id);
CREATE INDEX crontick_jobs_type ON crontick_jobs (job_type, id);

-- History: one row per attempt; seq orders a job's records oldest first (the history limit drops the lowest).
CREATE TABLE crontick_executions (
    seq          bigserial PRIMARY KEY,
    job_id       text NOT NULL,
    fire_at      timestamptz NOT NULL,
    attempt      bigint NOT NULL,
    tick_id      text NOT NULL,
    outcome      text NOT NULL,
    started_at   timestamptz NOT NULL,
    duration_ms  double precision NOT NULL,
    error        text,
    source       text NOT NULL,
    task         json
);
CREATE INDEX crontick_executions_job ON crontick_executions (job_id, seq);
CREATE INDEX crontick_executions_job_started ON crontick_executions (job_id, started_at DESC);
CREATE INDEX crontick_executions_started ON crontick_executions (started_at DESC);
CREATE INDEX crontick_executions_outcome ON crontick_executions (outcome, started_at DESC);

-- Tick records (status pages, duplicate detection of Cloud Scheduler retries).
CREATE TABLE crontick_ticks (
    tick_id         text PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    source          text NOT NULL,
    occurrence_key  text,
    finished_at     timestamptz,
    metrics         jsonb NOT NULL
);
CREATE INDEX crontick_ticks_started ON crontick_ticks (started_at DESC);

-- One row per Cloud Scheduler occurrence: the key is unique, so of two ticks racing for one
-- occurrence exactly one takes it (INSERT ... ON CONFLICT in the claim statement).
CREATE TABLE crontick_tick_occurrences (
    occurrence_key  text PRIMARY KEY,
    tick_id         text NOT NULL,
    started_at      timestamptz NOT NULL
);
CREATE INDEX crontick_tick_occurrences_started ON crontick_tick_occurrences (started_at);

-- The jobs table is the hot one: every claim and settle updates its rows. Vacuum it early
-- (docs/operating.md, "PostgreSQL"): at 2 % of dead rows instead of 20 %, and keep 20 % of
-- each page free so a job's new row version can stay on its page.
ALTER TABLE crontick_jobs SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE crontick_executions SET (autovacuum_vacuum_scale_factor = 0.05);
