-- The partitioned tables stay partitioned (a rollback cannot merge them back online); older
-- versions of callvault work on them. Only what this migration added goes.
DROP TABLE IF EXISTS audit_verified;
DROP FUNCTION IF EXISTS callvault_stray_rows();
DROP FUNCTION IF EXISTS callvault_ensure_partitions(timestamptz, bigint);
DROP FUNCTION IF EXISTS callvault_add_partition(regclass, text, text, text, text);
DROP FUNCTION IF EXISTS callvault_partition_bounds(regclass);
