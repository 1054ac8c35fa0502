-- Idempotency keys of the follow-through RPCs that create something (an item, an application, a
-- penalty, a case, a transfer, a bulletin): a client that retries after a lost answer sends the
-- same key and gets the first result back, never a second record. `content_hash` tells a resend
-- from a reuse of the key for other content, which is refused.
CREATE TABLE ledger_requests (
    agency_id        TEXT   NOT NULL,
    kind             TEXT   NOT NULL,
    idempotency_key  TEXT   NOT NULL,
    content_hash     TEXT   NOT NULL,
    -- The id of what the first request created.
    result_id        TEXT   NOT NULL,
    at               BIGINT NOT NULL
);
CREATE UNIQUE INDEX ledger_requests_by_key ON ledger_requests (agency_id, kind, idempotency_key);
