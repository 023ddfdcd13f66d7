-- Occurrences and timeline entries are always read and written by their primary key:
-- kept clustered on it (WITHOUT ROWID), each insert touches one B-tree instead of two.
CREATE TABLE occurrences_clustered (
    incident_id   TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    starts_at     INTEGER NOT NULL,
    status        TEXT NOT NULL,
    ends_at       INTEGER,
    labels        TEXT NOT NULL,
    annotations   TEXT NOT NULL,
    generator_url TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (incident_id, fingerprint, starts_at)
) WITHOUT ROWID;
INSERT INTO occurrences_clustered SELECT incident_id, fingerprint, starts_at, status, ends_at,
    labels, annotations, generator_url, updated_at FROM occurrences;
DROP TABLE occurrences;
ALTER TABLE occurrences_clustered RENAME TO occurrences;

CREATE TABLE incident_events_clustered (
    incident_id TEXT NOT NULL,
    n           INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (incident_id, n)
) WITHOUT ROWID;
INSERT INTO incident_events_clustered SELECT incident_id, n, at, kind, actor, detail
    FROM incident_events;
DROP TABLE incident_events;
ALTER TABLE incident_events_clustered RENAME TO incident_events;
