DROP TABLE IF EXISTS exports, dsr_requests, audit_log, outbox, discards, hold_subject_keys,
    holds, subject_keys, recordings CASCADE;
DROP FUNCTION IF EXISTS audit_log_append_only();
