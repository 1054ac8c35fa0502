-- Assignment down the levels (交办) and closure level by level (逐级对账销号): an item's chain of
-- levels, one row per division whose staffing office holds it there, depth 0 the office that
-- first assigned it. A level's confirmation is kept on its row for the current round; a send-back
-- clears the round, and every assignment, confirmation and send-back is also a step of the item
-- (ledger_steps), so nothing of the history is lost.
CREATE TABLE ledger_levels (
    item_id        TEXT   NOT NULL REFERENCES ledger_items (id),
    depth          BIGINT NOT NULL,
    jurisdiction   TEXT   NOT NULL,
    assigned_by    TEXT   NOT NULL,
    assigned_at    BIGINT NOT NULL,
    confirmed_by   TEXT,
    confirmed_at   BIGINT,
    PRIMARY KEY (item_id, depth)
);
CREATE INDEX ledger_levels_by_jurisdiction ON ledger_levels (jurisdiction);
