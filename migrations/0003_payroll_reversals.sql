-- Finance corrects a payroll line by pushing a reversal: both lines stay, the rules ignore both.
ALTER TABLE payroll_lines ADD COLUMN reverses TEXT;
ALTER TABLE payroll_lines ADD COLUMN reversed_by TEXT;
