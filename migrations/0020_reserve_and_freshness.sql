-- The reserve (留余地): of a year's entries, those through policy placement, kept beside the
-- entries by the same push (RESERVE_SHORTFALL reads both as one row). Filled for the entries
-- stored before it.
ALTER TABLE plan_entries ADD COLUMN placements BIGINT NOT NULL DEFAULT 0;
UPDATE plan_entries SET placements = (
    SELECT COUNT(*) FROM personnel_events e
    WHERE e.corrected_by IS NULL AND e.channel = 'POLICY_PLACEMENT' AND e.category = plan_entries.category
      AND CAST(SUBSTR(e.effective_on, 1, 4) AS BIGINT) = plan_entries.year
      AND ((e.event_type = 'HIRE' AND e.institution_uscc = plan_entries.institution_uscc)
        OR (e.event_type = 'TRANSFER' AND COALESCE(e.target_uscc, e.institution_uscc) = plan_entries.institution_uscc))
);

-- Data freshness (同步录入、实时更新): what each agency pushed on each day (the hub's date), per
-- record kind. Of personnel events: those `timed` (taking effect on or after the agency's first
-- push; the earlier ones are history loaded when it joined), their summed lag in days, and those
-- backdated (pushed later than the cadence allows).
CREATE TABLE agency_pushes (
    agency_id    TEXT   NOT NULL,
    record_kind  TEXT   NOT NULL,
    pushed_on    TEXT   NOT NULL,
    records      BIGINT NOT NULL,
    timed        BIGINT NOT NULL,
    lag_days     BIGINT NOT NULL,
    backdated    BIGINT NOT NULL,
    PRIMARY KEY (agency_id, record_kind, pushed_on)
);

-- The pay periods each finance agency has pushed lines for, and the day the first came.
CREATE TABLE payroll_months (
    agency_id        TEXT NOT NULL,
    period           TEXT NOT NULL,
    first_pushed_on  TEXT NOT NULL,
    PRIMARY KEY (agency_id, period)
);

-- The backdated events, each once: BACKDATED_EVENT cites those of its window.
CREATE TABLE backdated_events (
    agency_id     TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    effective_on  TEXT NOT NULL,
    pushed_on     TEXT NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);
CREATE INDEX backdated_events_by_day ON backdated_events (agency_id, pushed_on);
