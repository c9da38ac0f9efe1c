DROP TABLE IF EXISTS deadletters_discarded;
DROP INDEX IF EXISTS dsr_pending_idx;
ALTER TABLE dsr_requests DROP COLUMN IF EXISTS matched, DROP COLUMN IF EXISTS tenant;
DROP INDEX IF EXISTS exports_recordings_idx;
ALTER TABLE exports DROP COLUMN IF EXISTS recording_ids;
DROP TABLE IF EXISTS retention_policies, followups, discarded_calls;
CREATE TABLE IF NOT EXISTS discards (call_id text PRIMARY KEY, tenant text NOT NULL,
    discarded_at timestamptz NOT NULL);
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS published_at timestamptz;
CREATE INDEX IF NOT EXISTS outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
ALTER TABLE holds DROP COLUMN IF EXISTS reason_sealed, DROP COLUMN IF EXISTS case_ref_sealed;
DROP INDEX IF EXISTS recordings_stalled_idx, recordings_call_digest_key;
ALTER TABLE recordings DROP COLUMN IF EXISTS call_digest, DROP COLUMN IF EXISTS object_version,
    DROP COLUMN IF EXISTS duration_seconds, DROP COLUMN IF EXISTS channels,
    DROP COLUMN IF EXISTS master_key_id, DROP COLUMN IF EXISTS legal_hold;
ALTER TABLE recordings DROP CONSTRAINT recordings_status_check;
ALTER TABLE recordings ADD CONSTRAINT recordings_status_check
    CHECK (status IN ('storing', 'stored', 'purging', 'purged'));
