-- Special inspections and self-inspection (专项检查、检查和自查相结合): a staffing office's campaign
-- about some rule codes over some months, the institutions that must answer it, their
-- declarations, and the ledger items opened for problems left out of them (瞒报).

CREATE TABLE campaigns (
    id              TEXT   PRIMARY KEY,
    jurisdiction    TEXT   NOT NULL,
    title           TEXT   NOT NULL,
    -- The rule codes, comma-separated (`PAID_NOT_ON_ROLL,DOUBLE_PAY`).
    codes           TEXT   NOT NULL,
    -- The months looked at, `YYYY-MM`, both included.
    period_from     TEXT   NOT NULL,
    period_to       TEXT   NOT NULL,
    -- Last day for a declaration on time (YYYY-MM-DD, China Standard Time).
    deadline        TEXT   NOT NULL,
    state           TEXT   NOT NULL,
    opened_by       TEXT   NOT NULL,
    opened_at       BIGINT NOT NULL,
    closed_by       TEXT,
    closed_at       BIGINT,
    closing_note    TEXT,
    -- The comparison as it stood at the close (JSON), so the closing report stays what it was.
    closing_report  TEXT
);
CREATE INDEX campaigns_by_jurisdiction ON campaigns (jurisdiction, id);

-- The institutions a campaign must hear from, fixed when it opens; a missing declaration's steps
-- up the escalation ladder are claimed here.
CREATE TABLE campaign_scope (
    campaign_id       TEXT   NOT NULL REFERENCES campaigns (id),
    institution_uscc  TEXT   NOT NULL,
    jurisdiction      TEXT   NOT NULL,
    escalation_level  BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, institution_uscc)
);
CREATE INDEX campaign_scope_by_institution ON campaign_scope (institution_uscc);

-- One declaration per institution and campaign, never edited.
CREATE TABLE campaign_declarations (
    campaign_id       TEXT   NOT NULL REFERENCES campaigns (id),
    institution_uscc  TEXT   NOT NULL,
    -- The problems declared (JSON list of code, subject, period, note); `[]` with nothing_found.
    problems          TEXT   NOT NULL,
    nothing_found     BIGINT NOT NULL,
    signed_by         TEXT   NOT NULL,
    declared_by       TEXT   NOT NULL,
    declared_at       BIGINT NOT NULL,
    late              BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, institution_uscc)
);
CREATE INDEX campaign_declarations_by_institution ON campaign_declarations (institution_uscc);

-- The ledger items a campaign opened for undeclared problems: one per finding and campaign, so
-- opening them again opens nothing twice.
CREATE TABLE campaign_items (
    campaign_id       TEXT   NOT NULL REFERENCES campaigns (id),
    finding_code      TEXT   NOT NULL,
    institution_uscc  TEXT   NOT NULL,
    finding_subject   TEXT   NOT NULL,
    finding_period    TEXT   NOT NULL,
    item_id           TEXT   NOT NULL REFERENCES ledger_items (id),
    PRIMARY KEY (campaign_id, finding_code, institution_uscc, finding_subject, finding_period)
);
