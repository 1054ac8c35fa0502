-- A month's payroll lines indexed by period first: by person first, each line of a month went to
-- a leaf of its own all over the index, and a month's push wrote most of the index again (plain
-- INSERTs of a city's twelfth month ran at 0.25-0.43x of its first); by period, a month's lines
-- land together at the index's end. A person's lines are sought per stored period
-- (`check::live_lines_of`), and a (person, period) by this index directly.
DROP INDEX payroll_lines_by_person;
CREATE INDEX payroll_lines_by_period ON payroll_lines (period, resident_id);
