-- When each heartbeat (dead man's switch) was last pinged; a row appears when a node first
-- checks it (its clock starts then).
CREATE TABLE heartbeats (
    id        TEXT PRIMARY KEY,
    last_ping INTEGER NOT NULL,
    pings     INTEGER NOT NULL
);

-- Maintenance windows: alerts matching every matcher between the two times open incidents
-- marked suppressed (no pages).
CREATE TABLE maintenance_windows (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
