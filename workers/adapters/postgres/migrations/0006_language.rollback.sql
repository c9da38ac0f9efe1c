ALTER TABLE console_users DROP COLUMN IF EXISTS language;
ALTER TABLE dsr_requests DROP COLUMN IF EXISTS language;
