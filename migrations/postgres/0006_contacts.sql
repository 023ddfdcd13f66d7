-- Contacts: the people `to.user` names. The document (addresses, preferences) is kept as
-- JSON, validated by the gateway; `version` counts writes, so that concurrent edits of one
-- contact cannot overwrite each other unseen.
CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Why a delivery was not made although it was accepted (a contact's opt-out): one row per
-- such delivery, written with the message.
CREATE TABLE delivery_notes (
    delivery_id TEXT PRIMARY KEY,
    code        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    at          BIGINT NOT NULL
);
