-- Herald schema v1 (PostgreSQL): the same tables and columns as SQLite's migrations 1–3,
-- so that one logical backup restores into either. Times are Unix milliseconds.

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    priority    BIGINT NOT NULL,
    strategy    TEXT NOT NULL,
    sender      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    send_at     BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX messages_status ON messages(status, id);

CREATE TABLE deliveries (
    id                   TEXT PRIMARY KEY,
    message_id           TEXT NOT NULL REFERENCES messages(id),
    position             BIGINT NOT NULL,
    channel              TEXT NOT NULL,
    recipient            TEXT NOT NULL,
    status               TEXT NOT NULL,
    priority             BIGINT NOT NULL,
    due_at               BIGINT,
    fence                BIGINT NOT NULL DEFAULT 0,
    tries                BIGINT NOT NULL DEFAULT 0,
    lease_owner          TEXT,
    provider             TEXT,
    skip_providers       TEXT,
    updated_at           BIGINT NOT NULL,
    content              TEXT,
    provider_message_id  TEXT,
    activated_at         BIGINT
);
CREATE INDEX deliveries_message ON deliveries(message_id, position);
CREATE INDEX deliveries_due ON deliveries(priority, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_status ON deliveries(status);
CREATE INDEX deliveries_provider_message ON deliveries(provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX deliveries_awaiting_receipt ON deliveries(provider, updated_at) WHERE status = 'sent';
CREATE INDEX deliveries_recipient ON deliveries(channel, recipient);
CREATE INDEX deliveries_lease_owner ON deliveries(lease_owner) WHERE status = 'sending';

CREATE TABLE attempts (
    delivery_id          TEXT NOT NULL,
    n                    BIGINT NOT NULL,
    provider             TEXT NOT NULL,
    at                   BIGINT NOT NULL,
    duration_ms          BIGINT NOT NULL,
    outcome              TEXT NOT NULL,
    error_class          TEXT,
    error_code           TEXT,
    error_detail         TEXT,
    provider_message_id  TEXT,
    PRIMARY KEY (delivery_id, n)
);

CREATE TABLE dead_letters (
    message_id  TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    priority    BIGINT NOT NULL,
    failed_at   BIGINT NOT NULL,
    last_error  TEXT
);
CREATE INDEX dead_letters_channel ON dead_letters(channel, message_id);

CREATE TABLE idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    reply       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency(created_at);

CREATE TABLE inbox (
    id           TEXT PRIMARY KEY,
    "user"       TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    delivery_id  TEXT NOT NULL UNIQUE,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    read_at      BIGINT
);
CREATE INDEX inbox_user ON inbox("user", id);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    rate_limit  TEXT
);

CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    before  TEXT,
    after   TEXT,
    reason  TEXT
);

CREATE TABLE receipts (
    provider     TEXT NOT NULL,
    receipt_key  TEXT NOT NULL,
    delivery_id  TEXT,
    status       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    detail       TEXT,
    PRIMARY KEY (provider, receipt_key)
);

CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    reason      TEXT,
    actor       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE provider_switches (
    provider    TEXT PRIMARY KEY,
    disabled    BIGINT NOT NULL,
    reason      TEXT,
    actor       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
