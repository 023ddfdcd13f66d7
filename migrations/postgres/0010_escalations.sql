-- Escalations: each incident with a policy has one row saying which step fires next and
-- when, who holds it (a lease, with a fence raised by every claim and change), and the
-- figures MTTA is computed from. Pages: one row per message sent to a person for a step,
-- keyed as the message's idempotency key; reply codes are bound to the phone paged.
CREATE TABLE escalations (
    incident_id    TEXT PRIMARY KEY COLLATE "C",
    policy_id      TEXT NOT NULL,
    state          TEXT NOT NULL,
    step           BIGINT NOT NULL,
    pass           BIGINT NOT NULL,
    round          BIGINT NOT NULL,
    fired_step     BIGINT,
    fired_pass     BIGINT,
    due_at         BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until    BIGINT,
    fence          BIGINT NOT NULL,
    first_page_at  BIGINT,
    first_ack_at   BIGINT,
    first_ack_step BIGINT
);
CREATE INDEX escalations_due ON escalations (due_at) WHERE state <> 'done';

CREATE TABLE pages (
    key         TEXT PRIMARY KEY COLLATE "C",
    incident_id TEXT NOT NULL,
    step        BIGINT NOT NULL,
    pass        BIGINT NOT NULL,
    round       BIGINT NOT NULL,
    person      TEXT NOT NULL,
    method      TEXT NOT NULL,
    address     TEXT,
    reply_code  BIGINT,
    message_id  TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX pages_incident ON pages (incident_id, step, pass, round);
CREATE INDEX pages_address ON pages (address, created_at) WHERE address IS NOT NULL;

-- Acknowledge links that have acted (a link works once).
CREATE TABLE spent_links (
    nonce    TEXT PRIMARY KEY,
    spent_at BIGINT NOT NULL
);
CREATE INDEX pages_message ON pages (message_id) WHERE message_id IS NOT NULL;
