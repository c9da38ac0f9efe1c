-- depends: 0101_console_sign_in
-- Staff are scoped to tenants: a user sees the recordings, disclosures and registers of their
-- tenants only ('*' for every tenant, given explicitly). Accounts made before saw every
-- tenant, so they keep '*' until an administrator narrows them (callvault user tenants).
ALTER TABLE console_users ADD COLUMN tenants text[] NOT NULL DEFAULT '{*}';
ALTER TABLE console_users ALTER COLUMN tenants DROP DEFAULT;

-- What a disclosure handed over: its ZIP's key (until it expires), SHA-256 and size, kept in
-- the register written in the same transaction as the export's row and the audit entry.
ALTER TABLE disclosures
    ADD COLUMN export_key text,
    ADD COLUMN export_sha256 text,
    ADD COLUMN export_size bigint;
