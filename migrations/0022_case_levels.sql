-- Cases assigned down the levels (案件转交办) and closed level by level (逐级销号): a case's chain,
-- kept as an item's is in ledger_levels (the same columns, the same meaning: depth 0 the office
-- that first assigned it, each level's confirmation of the current round on its row, cleared by
-- a send-back; every move also a step in case_steps). A sibling table rather than a matter
-- column on ledger_levels so that each chain keeps its foreign key to the matter it belongs to,
-- as the steps of items and cases are kept apart (ledger_steps, case_steps).
CREATE TABLE case_levels (
    case_id        TEXT   NOT NULL REFERENCES cases (id),
    depth          BIGINT NOT NULL,
    jurisdiction   TEXT   NOT NULL,
    assigned_by    TEXT   NOT NULL,
    assigned_at    BIGINT NOT NULL,
    confirmed_by   TEXT,
    confirmed_at   BIGINT,
    PRIMARY KEY (case_id, depth)
);
CREATE INDEX case_levels_by_jurisdiction ON case_levels (jurisdiction);
