-- Schema v2: content rendered per delivery (templates), provider message ids for receipts.

ALTER TABLE deliveries ADD COLUMN content TEXT;               -- JSON; NULL: the message's content
ALTER TABLE deliveries ADD COLUMN provider_message_id TEXT;   -- the provider's id of the sent message
CREATE INDEX deliveries_provider_message ON deliveries(provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX deliveries_awaiting_receipt ON deliveries(provider, updated_at)
    WHERE status = 'sent';

CREATE TABLE receipts (
    provider     TEXT NOT NULL,
    receipt_key  TEXT NOT NULL,          -- what makes a report unique (dedupe)
    delivery_id  TEXT,
    status       TEXT NOT NULL,          -- delivered | failed | unknown
    received_at  INTEGER NOT NULL,
    detail       TEXT,
    PRIMARY KEY (provider, receipt_key)
) WITHOUT ROWID;
