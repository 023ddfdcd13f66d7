-- Incidents: what alerts become. `number` is the short id people type; an incident key
-- (`dedup_key`: the route and Alertmanager's groupKey, or an Events v2 dedup_key) has at
-- most one incident that is not resolved; a resolved one never reopens.
CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,
    number          BIGINT NOT NULL UNIQUE,
    dedup_key       TEXT NOT NULL,
    source          TEXT NOT NULL,
    route           TEXT NOT NULL,
    service         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    status          TEXT NOT NULL,
    title           TEXT NOT NULL,
    details         TEXT NOT NULL,
    opened_at       BIGINT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    resolved_at     BIGINT,
    resolved_by     TEXT,
    page_state      TEXT NOT NULL,
    notice_state    TEXT NOT NULL,
    notify_resolved BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX incidents_open_key ON incidents (dedup_key) WHERE status <> 'resolved';
CREATE INDEX incidents_owed ON incidents (updated_at)
    WHERE page_state = 'pending' OR notice_state = 'pending';

-- One firing of one alert: fingerprint + startsAt.
CREATE TABLE occurrences (
    incident_id   TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    starts_at     BIGINT NOT NULL,
    status        TEXT NOT NULL,
    ends_at       BIGINT,
    labels        TEXT NOT NULL,
    annotations   TEXT NOT NULL,
    generator_url TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint, starts_at)
);

CREATE TABLE incident_events (
    incident_id TEXT NOT NULL,
    n           BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (incident_id, n)
);

-- The messages an incident sent (its pages and its resolved notice).
CREATE TABLE incident_messages (
    incident_id TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    PRIMARY KEY (incident_id, message_id)
);
