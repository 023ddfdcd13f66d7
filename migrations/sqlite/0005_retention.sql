-- Retention: what the purge job looks rows up by.
CREATE INDEX IF NOT EXISTS messages_finished ON messages(updated_at)
    WHERE status IN ('sent', 'delivered', 'failed', 'expired', 'cancelled');
CREATE INDEX IF NOT EXISTS inbox_created ON inbox(created_at);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE INDEX IF NOT EXISTS receipts_received ON receipts(received_at);
CREATE INDEX IF NOT EXISTS receipts_delivery ON receipts(delivery_id);
