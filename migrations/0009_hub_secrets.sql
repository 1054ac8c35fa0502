-- Secrets the hub makes for itself and every replica must share, such as the key of the opaque
-- person tokens given to readers who see resident IDs masked. The first replica to need one
-- stores it; the others read it.
CREATE TABLE hub_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
