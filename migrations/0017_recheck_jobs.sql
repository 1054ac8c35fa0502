-- Full re-checks run as jobs (long-running operations): one row per job, its progress written at
-- every finished chunk of institutions, so that the job goes on from there after a restart (in
-- whichever replica holds the re-check lease).
CREATE TABLE recheck_jobs (
    id                TEXT   PRIMARY KEY,
    -- The jurisdiction re-checked; '' for everything (the schedule's).
    jurisdiction      TEXT   NOT NULL,
    as_of             TEXT   NOT NULL,
    dry_run           BIGINT NOT NULL,
    -- Which changes are kept (EVERYTHING, DATED_ONLY, NOTHING), decided when the job starts.
    keep              TEXT   NOT NULL,
    -- RUNNING, SUCCEEDED, FAILED or CANCELLED.
    state             TEXT   NOT NULL,
    cancel_requested  BIGINT NOT NULL,
    -- The agency that asked, or 'schedule'.
    requested_by      TEXT   NOT NULL,
    chunks_total      BIGINT NOT NULL,
    chunks_done       BIGINT NOT NULL,
    -- The last institution of the last finished chunk: the job goes on after it.
    done_through      TEXT   NOT NULL,
    institutions      BIGINT NOT NULL,
    raised            BIGINT NOT NULL,
    updated           BIGINT NOT NULL,
    resolved          BIGINT NOT NULL,
    open_after        BIGINT,
    error             TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    finished_at       BIGINT
);
CREATE INDEX recheck_jobs_by_state ON recheck_jobs (state, created_at);

