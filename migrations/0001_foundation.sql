-- The foundation schema: every pushed record, kept as pushed, and the effective-dated roll derived
-- from personnel events. Dates are ISO 8601 text (they sort as dates); instants are Unix microseconds.
-- Every migration runs on SQLite and on PostgreSQL alike, so types are spelled portably.

-- One row per record any agency pushed: the key of idempotency.
CREATE TABLE pushed_records (
    agency_id     TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    record_id     TEXT   NOT NULL,
    content_hash  TEXT   NOT NULL,
    accepted_at   BIGINT NOT NULL,
    PRIMARY KEY (agency_id, kind, record_id)
);

-- Every version of every institution pushed, oldest first by accepted_at.
CREATE TABLE institution_versions (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    uscc               TEXT   NOT NULL,
    name               TEXT   NOT NULL,
    jurisdiction       TEXT   NOT NULL,
    parent_uscc        TEXT,
    kind               TEXT   NOT NULL,
    grade              TEXT   NOT NULL,
    funding_form       TEXT,
    status             TEXT   NOT NULL,
    approval_document  TEXT   NOT NULL,
    established_on     TEXT,
    status_since       TEXT,
    political_legal    BIGINT NOT NULL,
    accepted_at        BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX institution_versions_by_uscc ON institution_versions (uscc);

-- The registry as it stands: the latest version of each institution.
CREATE TABLE institutions (
    uscc               TEXT   PRIMARY KEY,
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    name               TEXT   NOT NULL,
    jurisdiction       TEXT   NOT NULL,
    parent_uscc        TEXT,
    kind               TEXT   NOT NULL,
    grade              TEXT   NOT NULL,
    funding_form       TEXT,
    status             TEXT   NOT NULL,
    approval_document  TEXT   NOT NULL,
    established_on     TEXT,
    status_since       TEXT,
    political_legal    BIGINT NOT NULL,
    accepted_at        BIGINT NOT NULL
);
CREATE INDEX institutions_by_parent ON institutions (parent_uscc);
CREATE INDEX institutions_by_jurisdiction ON institutions (jurisdiction);

CREATE TABLE quotas (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL REFERENCES institutions (uscc),
    category           TEXT   NOT NULL,
    approved_count     BIGINT NOT NULL,
    effective_from     TEXT   NOT NULL,
    effective_to       TEXT,
    approval_document  TEXT   NOT NULL,
    accepted_at        BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX quotas_by_institution ON quotas (institution_uscc, category);

CREATE TABLE leader_posts (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL REFERENCES institutions (uscc),
    level              TEXT   NOT NULL,
    position           TEXT   NOT NULL,
    approved_count     BIGINT NOT NULL,
    effective_from     TEXT   NOT NULL,
    effective_to       TEXT,
    approval_document  TEXT   NOT NULL,
    accepted_at        BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX leader_posts_by_institution ON leader_posts (institution_uscc);

CREATE TABLE staffing_plans (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL REFERENCES institutions (uscc),
    year               BIGINT NOT NULL,
    category           TEXT   NOT NULL,
    channel            TEXT   NOT NULL,
    approved_count     BIGINT NOT NULL,
    approval_document  TEXT   NOT NULL,
    accepted_at        BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX staffing_plans_by_institution ON staffing_plans (institution_uscc, year);

CREATE TABLE hiring_approvals (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    approval_number    TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL REFERENCES institutions (uscc),
    category           TEXT   NOT NULL,
    approved_entries   BIGINT NOT NULL,
    issued_on          TEXT   NOT NULL,
    valid_until        TEXT   NOT NULL,
    accepted_at        BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX hiring_approvals_by_number ON hiring_approvals (approval_number);
CREATE INDEX hiring_approvals_by_institution ON hiring_approvals (institution_uscc);

-- People the hub has heard of, by resident ID.
CREATE TABLE persons (
    resident_id  TEXT   PRIMARY KEY,
    name         TEXT   NOT NULL,
    first_seen   BIGINT NOT NULL
);

-- HR's events as pushed; the roll below is derived from them.
CREATE TABLE personnel_events (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    event_type         TEXT   NOT NULL,
    resident_id        TEXT   NOT NULL,
    name               TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL,
    category           TEXT,
    rank               TEXT,
    effective_on       TEXT   NOT NULL,
    approval_number    TEXT,
    channel            TEXT,
    target_uscc        TEXT,
    accepted_at        BIGINT NOT NULL,
    arrival            BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX personnel_events_by_person ON personnel_events (resident_id);
CREATE INDEX personnel_events_by_approval ON personnel_events (approval_number);

-- The effective-dated roll: [valid_from, valid_to) per person and institution.
CREATE TABLE person_spells (
    resident_id        TEXT   NOT NULL,
    ordinal            BIGINT NOT NULL,
    institution_uscc   TEXT   NOT NULL,
    category           TEXT   NOT NULL,
    rank               TEXT   NOT NULL,
    status             TEXT   NOT NULL,
    valid_from         TEXT   NOT NULL,
    valid_to           TEXT,
    approval_number    TEXT,
    seconded_to        TEXT,
    PRIMARY KEY (resident_id, ordinal)
);
CREATE INDEX person_spells_by_institution ON person_spells (institution_uscc, valid_from);

CREATE TABLE appointments (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    action             TEXT   NOT NULL,
    resident_id        TEXT   NOT NULL,
    name               TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL,
    level              TEXT   NOT NULL,
    position           TEXT   NOT NULL,
    rank               TEXT   NOT NULL,
    effective_on       TEXT   NOT NULL,
    document           TEXT   NOT NULL,
    accepted_at        BIGINT NOT NULL,
    arrival            BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX appointments_by_person ON appointments (resident_id);

-- Leader terms derived from appointments: [valid_from, valid_to).
CREATE TABLE leader_terms (
    resident_id        TEXT   NOT NULL,
    ordinal            BIGINT NOT NULL,
    institution_uscc   TEXT   NOT NULL,
    level              TEXT   NOT NULL,
    position           TEXT   NOT NULL,
    rank               TEXT   NOT NULL,
    valid_from         TEXT   NOT NULL,
    valid_to           TEXT,
    PRIMARY KEY (resident_id, ordinal)
);
CREATE INDEX leader_terms_by_institution ON leader_terms (institution_uscc);

CREATE TABLE payroll_lines (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    period             TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL,
    resident_id        TEXT   NOT NULL,
    name               TEXT   NOT NULL,
    gross_fen          BIGINT NOT NULL,
    accepted_at        BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX payroll_lines_by_institution ON payroll_lines (institution_uscc, period);
CREATE INDEX payroll_lines_by_person ON payroll_lines (resident_id, period);

CREATE TABLE fundings (
    agency_id          TEXT   NOT NULL,
    record_id          TEXT   NOT NULL,
    institution_uscc   TEXT   NOT NULL,
    category           TEXT   NOT NULL,
    period             TEXT   NOT NULL,
    funded_headcount   BIGINT NOT NULL,
    amount_fen         BIGINT NOT NULL,
    accepted_at        BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX fundings_by_institution ON fundings (institution_uscc, period);
