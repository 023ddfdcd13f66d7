-- Only SMS deliveries ever get a polled receipt, so only they are indexed as awaiting one
-- (every sent webhook, email and inbox item was: one more index entry per delivery).
DROP INDEX deliveries_awaiting_receipt;
CREATE INDEX deliveries_awaiting_receipt ON deliveries(provider, updated_at)
    WHERE status = 'sent' AND channel = 'sms';
