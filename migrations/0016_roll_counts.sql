-- The people on each (institution, category) roll, as the count from each date it changes
-- (domain::aggregates::Headcount): kept by the push that rewrites a person's spells, so that a
-- check reads one row where it read the roll. A count on a date is the last row on or before it.
CREATE TABLE roll_counts (
    institution_uscc TEXT NOT NULL,
    category TEXT NOT NULL,
    on_date TEXT NOT NULL,
    people BIGINT NOT NULL,
    PRIMARY KEY (institution_uscc, category, on_date)
);

-- The evidence sample of a roll: its first people by resident ID on a date.
CREATE INDEX person_spells_by_roll ON person_spells (institution_uscc, category, resident_id);

-- A leader's terms, and a year's entries, are read by index too.
CREATE INDEX leader_terms_by_person ON leader_terms (resident_id);
CREATE INDEX personnel_events_by_institution_date ON personnel_events (institution_uscc, event_type, effective_on);
CREATE INDEX personnel_events_by_target_date ON personnel_events (target_uscc, event_type, effective_on);
CREATE INDEX findings_by_institution_code ON findings (institution_uscc, code);

-- The entries (hires, transfers arriving) per (institution, category, year), for OVER_PLAN:
-- kept by the same push, read as one row.
CREATE TABLE plan_entries (
    institution_uscc TEXT NOT NULL,
    category TEXT NOT NULL,
    year BIGINT NOT NULL,
    entries BIGINT NOT NULL,
    PRIMARY KEY (institution_uscc, category, year)
);
