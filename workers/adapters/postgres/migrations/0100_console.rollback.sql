DROP INDEX IF EXISTS recordings_purged_at_idx;
DROP INDEX IF EXISTS recordings_stored_at_idx;
DROP TABLE IF EXISTS disclosure_recordings, disclosures, access_log, console_login_failures,
    console_tokens, console_users CASCADE;
