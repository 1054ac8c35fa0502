-- The day the hub began judging data freshness: its first start (or, upgraded from 0020, the
-- first push it noted). A month whose payroll was due before it is not owed: a hub that starts
-- mid-year does not call every earlier month of an initial load late. `[freshness] watch_from`
-- overrides it. One row.
CREATE TABLE freshness_watch (
    singleton  BIGINT PRIMARY KEY CHECK (singleton = 1),
    since      TEXT   NOT NULL
);
INSERT INTO freshness_watch (singleton, since)
SELECT 1, earliest FROM (SELECT MIN(pushed_on) AS earliest FROM agency_pushes) noted
WHERE earliest IS NOT NULL;
