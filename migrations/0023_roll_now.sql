-- Each roll's count as of the hub's date when a push last moved it: the row of `roll_counts` in
-- force then (`since`, NULL when none was), and the date of its next change (`until`, NULL when
-- none comes). Kept by the push that moves `roll_counts`, so that REGIONAL_BALANCE for a date
-- in [since, until) reads one row per roll instead of finding each roll's last change; a roll
-- whose `until` has come is read from `roll_counts` again. Filled at start for the counts stored
-- before it.
CREATE TABLE roll_now (
    institution_uscc TEXT NOT NULL,
    category TEXT NOT NULL,
    people BIGINT NOT NULL,
    since TEXT,
    until TEXT,
    PRIMARY KEY (institution_uscc, category)
);
CREATE INDEX roll_now_by_until ON roll_now (until);
