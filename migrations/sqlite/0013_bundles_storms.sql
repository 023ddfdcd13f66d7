-- Bundles: pages (and notices to people paged) due for one person on one contact method
-- within a short window go out as one message. A page is held (`hold_until`) until the
-- bundler takes it into a bundle; `bundle_id` says which, once, so a page is in exactly
-- one bundle. `kind` is `page` or `notice` (acknowledged-by / resolved notices), `note`
-- the line a notice shows. A page may not go before `not_before` (a paging rule's delay).
ALTER TABLE pages ADD COLUMN kind TEXT NOT NULL DEFAULT 'page';
ALTER TABLE pages ADD COLUMN note TEXT;
ALTER TABLE pages ADD COLUMN not_before INTEGER;
ALTER TABLE pages ADD COLUMN hold_until INTEGER;
ALTER TABLE pages ADD COLUMN bundle_id TEXT;
CREATE INDEX pages_held ON pages (person, method, kind) WHERE hold_until IS NOT NULL AND bundle_id IS NULL;
CREATE INDEX pages_bundle ON pages (bundle_id) WHERE bundle_id IS NOT NULL;

CREATE TABLE bundles (
    id         TEXT PRIMARY KEY,
    person     TEXT NOT NULL,
    method     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    address    TEXT,
    reply_code INTEGER,
    size       INTEGER NOT NULL,
    message_id TEXT,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX bundles_recent ON bundles (person, method, kind, created_at);
CREATE INDEX bundles_address ON bundles (address, created_at) WHERE address IS NOT NULL;
CREATE INDEX bundles_message ON bundles (message_id) WHERE message_id IS NOT NULL;

-- Storms: above a rate of new incidents in a scope (one service, or all), new incidents
-- are grouped into one storm incident (`grouped_into`) that escalates for them all.
-- Inhibition: an incident whose alerts a firing alert inhibits pages no one
-- (`inhibited_by` names the inhibiting incident).
ALTER TABLE incidents ADD COLUMN grouped_into TEXT;
ALTER TABLE incidents ADD COLUMN inhibited_by TEXT;
CREATE INDEX incidents_grouped ON incidents (grouped_into) WHERE grouped_into IS NOT NULL;
CREATE INDEX incidents_inhibited ON incidents (inhibited_by) WHERE inhibited_by IS NOT NULL;
CREATE INDEX incidents_opened ON incidents (service, opened_at);

CREATE TABLE storms (
    incident_id   TEXT PRIMARY KEY,
    scope         TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    count         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX storms_active ON storms (scope) WHERE ended_at IS NULL;
