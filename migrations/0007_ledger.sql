-- Follow-through: the rectification ledger (问题整改台账), staffing applications and their gate,
-- penalties, public reports and their cases, transfers and joint inspections, bulletins. Every
-- step of an item or case is a row of its own, appended and never changed (全程留痕); the item or
-- case row holds only where it stands now.

-- One matter, one account (一事一账).
CREATE TABLE ledger_items (
    id                  TEXT   PRIMARY KEY,
    jurisdiction        TEXT   NOT NULL,
    department_uscc     TEXT   NOT NULL,
    title               TEXT   NOT NULL,
    -- The finding the item was opened from, if any: it closes only once the finding is resolved.
    finding_code        TEXT,
    finding_subject     TEXT,
    finding_period      TEXT,
    state               TEXT   NOT NULL,
    due_on              TEXT   NOT NULL,
    escalation_level    BIGINT NOT NULL,
    opened_by           TEXT   NOT NULL,
    opened_at           BIGINT NOT NULL,
    closed_at           BIGINT,
    version             BIGINT NOT NULL
);
CREATE INDEX ledger_items_by_department ON ledger_items (department_uscc, state);
CREATE INDEX ledger_items_by_jurisdiction ON ledger_items (jurisdiction, state);

-- Every step of an item, in order; `seq` counts from 1 per item.
CREATE TABLE ledger_steps (
    item_id      TEXT   NOT NULL REFERENCES ledger_items (id),
    seq          BIGINT NOT NULL,
    agency_id    TEXT   NOT NULL,
    at           BIGINT NOT NULL,
    from_state   TEXT   NOT NULL,
    to_state     TEXT   NOT NULL,
    text         TEXT   NOT NULL,
    PRIMARY KEY (item_id, seq)
);

-- Staffing applications of departments and the staffing office's decisions.
CREATE TABLE applications (
    id                  TEXT   PRIMARY KEY,
    jurisdiction        TEXT   NOT NULL,
    department_uscc     TEXT   NOT NULL,
    kind                TEXT   NOT NULL,
    -- What is asked for, as JSON (a quota, posts, an approval).
    request             TEXT   NOT NULL,
    reason              TEXT   NOT NULL,
    state               TEXT   NOT NULL,
    applied_by          TEXT   NOT NULL,
    applied_at          BIGINT NOT NULL,
    -- Set when the gate was passed by an explicit override: the reason, kept with the application.
    override_reason     TEXT,
    override_by         TEXT
);
CREATE INDEX applications_by_department ON applications (department_uscc);

CREATE TABLE application_decisions (
    application_id  TEXT   PRIMARY KEY REFERENCES applications (id),
    approved        BIGINT NOT NULL,
    note            TEXT   NOT NULL,
    decided_by      TEXT   NOT NULL,
    decided_at      BIGINT NOT NULL,
    -- The registry record an approval pushed (`agency/record id`), with the application as source.
    registry_record TEXT
);

-- Penalties recorded against an institution, each tied to a ledger item.
CREATE TABLE penalties (
    id                TEXT   PRIMARY KEY,
    item_id           TEXT   NOT NULL REFERENCES ledger_items (id),
    institution_uscc  TEXT   NOT NULL,
    kind              TEXT   NOT NULL,
    category          TEXT,
    cut               BIGINT NOT NULL,
    text              TEXT   NOT NULL,
    imposed_by        TEXT   NOT NULL,
    imposed_at        BIGINT NOT NULL
);
CREATE INDEX penalties_by_institution ON penalties (institution_uscc);

-- Public reports (12310 hotline, mailbox, letters and visits) and the cases they become.
CREATE TABLE cases (
    id                 TEXT   PRIMARY KEY,
    jurisdiction       TEXT   NOT NULL,
    channel            TEXT   NOT NULL,
    institution_uscc   TEXT,
    person             TEXT,
    text               TEXT   NOT NULL,
    owner              TEXT   NOT NULL,
    state              TEXT   NOT NULL,
    due_on             TEXT   NOT NULL,
    escalation_level   BIGINT NOT NULL,
    outcome            TEXT,
    opened_by          TEXT   NOT NULL,
    opened_at          BIGINT NOT NULL,
    closed_at          BIGINT,
    version            BIGINT NOT NULL
);
CREATE INDEX cases_by_jurisdiction ON cases (jurisdiction, state);

CREATE TABLE case_steps (
    case_id      TEXT   NOT NULL REFERENCES cases (id),
    seq          BIGINT NOT NULL,
    agency_id    TEXT   NOT NULL,
    at           BIGINT NOT NULL,
    from_state   TEXT   NOT NULL,
    to_state     TEXT   NOT NULL,
    text         TEXT   NOT NULL,
    PRIMARY KEY (case_id, seq)
);

-- A matter (alert, ledger item, case) sent to the discipline agency (案件移送), or shared with
-- several agencies as a joint inspection (联合督查).
CREATE TABLE transfers (
    id             TEXT   PRIMARY KEY,
    jurisdiction   TEXT   NOT NULL,
    kind           TEXT   NOT NULL,
    subject_kind   TEXT   NOT NULL,
    subject_id     TEXT   NOT NULL,
    text           TEXT   NOT NULL,
    sent_by        TEXT   NOT NULL,
    sent_at        BIGINT NOT NULL
);

-- One row per agency kind a transfer reaches; acknowledged once it confirms receipt.
CREATE TABLE transfer_receipts (
    transfer_id      TEXT   NOT NULL REFERENCES transfers (id),
    agency_kind      TEXT   NOT NULL,
    acknowledged_by  TEXT,
    acknowledged_at  BIGINT,
    PRIMARY KEY (transfer_id, agency_kind)
);

-- Closed cases published as a warning by example (通报), personal data removed.
CREATE TABLE bulletins (
    id             TEXT   PRIMARY KEY,
    case_id        TEXT   NOT NULL REFERENCES cases (id),
    jurisdiction   TEXT   NOT NULL,
    text           TEXT   NOT NULL,
    published_by   TEXT   NOT NULL,
    published_at   BIGINT NOT NULL
);

-- Feed events about follow-up rather than a finding carry their payload here (JSON; NULL for
-- findings); `reach` limits which agency kinds see them: empty for all, otherwise a list such as
-- `,discipline,audit,`; `below` is set on a bulletin to the publisher's division prefix, so that
-- the divisions under it see it too.
ALTER TABLE feed_events ADD COLUMN follow_up TEXT;
ALTER TABLE feed_events ADD COLUMN reach TEXT NOT NULL DEFAULT '';
ALTER TABLE feed_events ADD COLUMN below TEXT NOT NULL DEFAULT '';
