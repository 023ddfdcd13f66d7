-- On-call documents: schedules and escalation policies, stored as the JSON the API checked,
-- with a version for edits that must not overwrite a change they did not see.
CREATE TABLE oncall_documents (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
