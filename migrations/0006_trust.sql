-- Trust: the agency registry the operator keeps, and the tamper-evident audit trail of every call.

-- Agencies the hub serves. A certificate naming an agency that is missing here, or disabled, is
-- refused even though it chains to the CA. `id` is `{jurisdiction}/{kind}` as in certificates.
CREATE TABLE agencies (
    id            TEXT   PRIMARY KEY,
    kind          TEXT   NOT NULL,
    jurisdiction  TEXT   NOT NULL,
    enabled       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- The certificates each agency may present: SHA-256 (hex) of the leaf's DER. Re-keying adds one;
-- a revoked one stays on record with the time it was revoked.
CREATE TABLE agency_certificates (
    fingerprint  TEXT   PRIMARY KEY,
    agency_id    TEXT   NOT NULL REFERENCES agencies (id),
    added_at     BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX agency_certificates_by_agency ON agency_certificates (agency_id);

-- Every call and refused handshake, each entry chained to the one before: `hash` is the SHA-256 of
-- the previous entry's hash and this entry's canonical bytes (src/audit.rs).
CREATE TABLE audit_log (
    seq           BIGINT PRIMARY KEY,
    at            BIGINT NOT NULL,
    agency_id     TEXT   NOT NULL,
    jurisdiction  TEXT   NOT NULL,
    fingerprint   TEXT   NOT NULL,
    peer          TEXT   NOT NULL,
    method        TEXT   NOT NULL,
    touched       TEXT   NOT NULL,
    outcome       TEXT   NOT NULL,
    prev_hash     TEXT   NOT NULL,
    hash          TEXT   NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- The last entry of the chain. Appends lock this one row, so replicas on one database take turns
-- and keep a single chain; verification compares the chain's end with it.
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT   NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
