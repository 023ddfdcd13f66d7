-- Schema v4: nodes (heartbeats) and leases for jobs that run on one node at a time.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    address       TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    state         TEXT NOT NULL          -- alive | dead | stopped
);
CREATE TABLE job_leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   INTEGER NOT NULL
);
CREATE INDEX deliveries_lease_owner ON deliveries(lease_owner) WHERE status = 'sending';
