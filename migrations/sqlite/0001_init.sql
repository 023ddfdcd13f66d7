-- Herald schema v1 (SQLite). Times are Unix milliseconds.

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    strategy    TEXT NOT NULL,
    sender      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    send_at     INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    body        TEXT NOT NULL            -- JSON: content, template, params, metadata
);
CREATE INDEX messages_status ON messages(status, id);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    message_id      TEXT NOT NULL REFERENCES messages(id),
    position        INTEGER NOT NULL,
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    status          TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    due_at          INTEGER,             -- claimable from then on; NULL when not claimable
    fence           INTEGER NOT NULL DEFAULT 0,   -- claim counter: the fencing token
    tries           INTEGER NOT NULL DEFAULT 0,   -- calls since the last replay
    lease_owner     TEXT,
    provider        TEXT,
    skip_providers  TEXT,                -- JSON array
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_message ON deliveries(message_id, position);
CREATE INDEX deliveries_due ON deliveries(priority, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_status ON deliveries(status);

CREATE TABLE attempts (
    delivery_id          TEXT NOT NULL,
    n                    INTEGER NOT NULL,
    provider             TEXT NOT NULL,
    at                   INTEGER NOT NULL,
    duration_ms          INTEGER NOT NULL,
    outcome              TEXT NOT NULL,
    error_class          TEXT,
    error_code           TEXT,
    error_detail         TEXT,
    provider_message_id  TEXT,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    message_id  TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    failed_at   INTEGER NOT NULL,
    last_error  TEXT
);
CREATE INDEX dead_letters_channel ON dead_letters(channel, message_id);

CREATE TABLE idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    reply       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency(created_at);

CREATE TABLE inbox (
    id           TEXT PRIMARY KEY,
    user         TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    delivery_id  TEXT NOT NULL UNIQUE,
    body         TEXT NOT NULL,          -- JSON: subject, text, html, metadata
    created_at   INTEGER NOT NULL,
    read_at      INTEGER
);
CREATE INDEX inbox_user ON inbox(user, id);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    before  TEXT,
    after   TEXT,
    reason  TEXT
);
