-- Findings, keyed as in docs/RULES.md: raised once, updated while they hold, resolved when the data
-- no longer shows them, raised again (same row, next version) if it shows them again.
CREATE TABLE findings (
    code               TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL,
    subject            TEXT   NOT NULL,
    period             TEXT   NOT NULL,
    jurisdiction       TEXT   NOT NULL,
    severity           TEXT   NOT NULL,
    state              TEXT   NOT NULL,
    actual             BIGINT NOT NULL,
    limit_value        BIGINT NOT NULL,
    explanation_zh     TEXT   NOT NULL,
    explanation_en     TEXT   NOT NULL,
    -- JSON array of [kind, id] pairs.
    evidence           TEXT   NOT NULL,
    raised_at          BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    resolved_at        BIGINT,
    version            BIGINT NOT NULL,
    PRIMARY KEY (code, institution_uscc, subject, period)
);
CREATE INDEX findings_by_institution ON findings (institution_uscc);
CREATE INDEX findings_by_subject ON findings (subject);
CREATE INDEX findings_by_jurisdiction ON findings (jurisdiction, state);

-- Background work that one replica at a time should do (the scheduled re-check).
CREATE TABLE leases (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE INDEX personnel_events_by_institution ON personnel_events (institution_uscc, event_type);
CREATE INDEX personnel_events_by_target ON personnel_events (target_uscc, event_type);
CREATE INDEX appointments_by_institution ON appointments (institution_uscc);
CREATE INDEX fundings_by_institution_category ON fundings (institution_uscc, category, period);
