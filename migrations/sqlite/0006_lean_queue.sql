-- Fewer index entries per delivery. Only SMS deliveries ever get a polled receipt, so only
-- they are indexed as awaiting one (every sent webhook, email and inbox item was).
-- Leases per node are found through deliveries_status (`sending` rows are few); one SQLite
-- node needs no index of its own for them.
DROP INDEX deliveries_lease_owner;
DROP INDEX deliveries_awaiting_receipt;
CREATE INDEX deliveries_awaiting_receipt ON deliveries(provider, updated_at)
    WHERE status = 'sent' AND channel = 'sms';
