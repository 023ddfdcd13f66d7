-- The audit log's hash chain: `seq` is an entry's place in the chain, set when the entry is
-- sealed (at once on SQLite), with the hash of the entry before it and its own.
ALTER TABLE audit ADD COLUMN seq INTEGER;
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_seq ON audit (seq);
CREATE INDEX audit_unsealed ON audit (id) WHERE seq IS NULL;

-- Keys with the right to approve what another key asked for.
ALTER TABLE api_keys ADD COLUMN approver INTEGER NOT NULL DEFAULT 0;
-- A manual switch may end by itself.
ALTER TABLE provider_switches ADD COLUMN until INTEGER;

-- Critical switches wait for a second person.
CREATE TABLE approvals (
    id             TEXT PRIMARY KEY,
    action         TEXT NOT NULL,
    params         TEXT NOT NULL,
    summary        TEXT NOT NULL,
    reason         TEXT NOT NULL,
    requester      TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    decided_by     TEXT,
    decided_at     INTEGER,
    decision_note  TEXT,
    result         TEXT,
    break_glass    INTEGER NOT NULL DEFAULT 0,
    reviewed_by    TEXT,
    reviewed_at    INTEGER
);
CREATE INDEX approvals_open ON approvals (created_at) WHERE status = 'pending';

-- Console sign-ins: the session token and CSRF token are kept hashed.
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL,
    csrf_hash  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

-- The public status page: what operators post, and each component's minutes per state per day.
CREATE TABLE status_incidents (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    impact      TEXT NOT NULL,
    status      TEXT NOT NULL,
    components  TEXT NOT NULL,
    incident_id TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE TABLE status_updates (
    id          TEXT PRIMARY KEY,
    incident    TEXT NOT NULL REFERENCES status_incidents (id),
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX status_updates_incident ON status_updates (incident, created_at);
CREATE TABLE status_days (
    component   TEXT NOT NULL,
    day         TEXT NOT NULL,
    degraded    INTEGER NOT NULL DEFAULT 0,
    partial     INTEGER NOT NULL DEFAULT 0,
    major       INTEGER NOT NULL DEFAULT 0,
    maintenance INTEGER NOT NULL DEFAULT 0,
    sampled     INTEGER NOT NULL DEFAULT 0,
    last_minute INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (component, day)
);
