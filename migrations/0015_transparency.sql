-- The audit trail as a Merkle tree log (RFC 9162): entry `seq` is leaf `seq - 1`. `audit_tree`
-- keeps the tree's stored hashes (Go tlog layout) of the complete subtrees of 16 entries and more,
-- about one row per eight entries; smaller ones are hashed again from the entries when asked for.
CREATE TABLE audit_tree (
    idx   BIGINT PRIMARY KEY,
    hash  TEXT   NOT NULL
);

-- The tree's size, root and right edge (the hashes of the complete subtrees it ends with, hex, at
-- most 64: what the next append builds on) move with the chain's head, in the same transaction; so
-- does the last checkpoint issued (its size and when), which says when the next is due.
ALTER TABLE audit_head ADD COLUMN tree_size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_head ADD COLUMN root TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_head ADD COLUMN edge TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_head ADD COLUMN checkpoint_size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_head ADD COLUMN checkpoint_at BIGINT NOT NULL DEFAULT 0;

-- Signed checkpoints (C2SP tlog-checkpoint notes), one per tree size.
CREATE TABLE audit_checkpoints (
    tree_size  BIGINT PRIMARY KEY,
    root       TEXT   NOT NULL,
    note       TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL
);
