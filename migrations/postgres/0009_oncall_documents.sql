-- On-call documents: schedules and escalation policies, stored as the JSON the API checked,
-- with a version for edits that must not overwrite a change they did not see.
CREATE TABLE oncall_documents (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL COLLATE "C",
    body       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
