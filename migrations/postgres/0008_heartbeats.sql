-- When each heartbeat (dead man's switch) was last pinged; a row appears when a node first
-- checks it (its clock starts then).
CREATE TABLE heartbeats (
    id        TEXT PRIMARY KEY,
    last_ping BIGINT NOT NULL,
    pings     BIGINT NOT NULL
);
