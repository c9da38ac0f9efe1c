ALTER TABLE recordings DROP COLUMN IF EXISTS channels;
ALTER TABLE recordings DROP COLUMN IF EXISTS duration_seconds;
