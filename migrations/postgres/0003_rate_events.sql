-- Schema v3 (PostgreSQL): a sliding-window log for limits that hold across nodes
-- (per API key, per provider).
CREATE TABLE rate_events (
    key  TEXT NOT NULL,
    at   BIGINT NOT NULL
);
CREATE INDEX rate_events_key_at ON rate_events(key, at);
