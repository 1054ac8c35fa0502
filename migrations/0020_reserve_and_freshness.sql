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
