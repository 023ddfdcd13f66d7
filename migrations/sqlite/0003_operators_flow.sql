-- Schema v3: operator switches (mode, providers), per-key rate limits, failover deadlines,
-- per-recipient counting.

CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    reason      TEXT,
    actor       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE provider_switches (
    provider    TEXT PRIMARY KEY,
    disabled    INTEGER NOT NULL,
    reason      TEXT,
    actor       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

ALTER TABLE api_keys ADD COLUMN rate_limit TEXT;
ALTER TABLE deliveries ADD COLUMN activated_at INTEGER;   -- when the channel's turn began
CREATE INDEX deliveries_recipient ON deliveries(channel, recipient);
