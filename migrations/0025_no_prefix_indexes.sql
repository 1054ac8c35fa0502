-- Indexes whose columns begin another index of the same table: every lookup they served, the
-- longer one serves, and each was one more B-tree for every insert to write (a city's personnel
-- events went into seven).
DROP INDEX personnel_events_by_institution;
DROP INDEX personnel_events_by_target;
DROP INDEX findings_by_institution;
DROP INDEX findings_by_subject;
