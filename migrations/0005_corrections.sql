-- HR corrects a personnel event entered wrongly by pushing its replacement: both stay on record,
-- only the replacement counts.
ALTER TABLE personnel_events ADD COLUMN corrects TEXT;
ALTER TABLE personnel_events ADD COLUMN corrected_by TEXT;
