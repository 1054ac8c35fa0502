-- A push of pay lines reads the stored findings of its people for the lines' period only (a pay
-- key covers that period's findings), so the read does not grow with the months a person has been
-- paid: the whole key goes into the index.
CREATE INDEX findings_by_subject_period ON findings (subject, period);
