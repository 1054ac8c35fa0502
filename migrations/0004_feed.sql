-- Alerts: the follow-up of each finding, and its escalation along the ladder.
ALTER TABLE findings ADD COLUMN alert_state TEXT NOT NULL DEFAULT 'OPEN';
ALTER TABLE findings ADD COLUMN escalation_level BIGINT NOT NULL DEFAULT 0;
ALTER TABLE findings ADD COLUMN acknowledged BIGINT NOT NULL DEFAULT 0;
ALTER TABLE findings ADD COLUMN acknowledge_by BIGINT;
ALTER TABLE findings ADD COLUMN rectify_by BIGINT;
CREATE INDEX findings_for_escalation ON findings (state, alert_state);

-- The feed: every change to a finding or alert, written in the transaction that made it (an
-- outbox), numbered without gaps in commit order.
CREATE TABLE feed_events (
    seq                BIGINT PRIMARY KEY,
    event_id           TEXT   NOT NULL UNIQUE,
    event_type         TEXT   NOT NULL,
    code               TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL,
    subject            TEXT   NOT NULL,
    period             TEXT   NOT NULL,
    jurisdiction       TEXT   NOT NULL,
    severity           TEXT   NOT NULL,
    -- JSON: the finding and its alert as they stood after the event.
    finding            TEXT   NOT NULL,
    created_at         BIGINT NOT NULL
);
CREATE INDEX feed_events_by_time ON feed_events (created_at);

-- Small facts about the feed, such as how far it has been trimmed.
CREATE TABLE feed_state (
    name   TEXT   PRIMARY KEY,
    value  BIGINT NOT NULL
);

-- Named, durable subscriptions; `acked_seq` is the cumulative acknowledgement.
CREATE TABLE subscriptions (
    agency_id     TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    filter        TEXT   NOT NULL,
    content_mode  TEXT   NOT NULL,
    acked_seq     BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (agency_id, name)
);

-- Every hand transition of an alert, never edited; the idempotency key makes a resend harmless.
CREATE TABLE alert_transitions (
    agency_id         TEXT   NOT NULL,
    idempotency_key   TEXT   NOT NULL,
    code              TEXT   NOT NULL,
    institution_uscc  TEXT   NOT NULL,
    subject           TEXT   NOT NULL,
    period            TEXT   NOT NULL,
    from_state        TEXT   NOT NULL,
    to_state          TEXT   NOT NULL,
    version_after     BIGINT NOT NULL,
    note              TEXT   NOT NULL,
    at                BIGINT NOT NULL,
    PRIMARY KEY (agency_id, idempotency_key)
);
