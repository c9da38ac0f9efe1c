ALTER TABLE disclosures
    DROP COLUMN IF EXISTS export_key,
    DROP COLUMN IF EXISTS export_sha256,
    DROP COLUMN IF EXISTS export_size;
ALTER TABLE console_users DROP COLUMN IF EXISTS tenants;
