-- depends: 0100_console
-- Erasures remember, for a while, whom they erased (by keyed digest only), so that a call that
-- ended before the request but arrives after it (a telephony backlog, a replayed dead letter)
-- is erased on arrival; an objection also covers calls that end after it.
CREATE TABLE erasure_subjects (
    request_id    text NOT NULL REFERENCES dsr_requests (request_id) ON DELETE CASCADE,
    digest        bytea NOT NULL,
    received_at   timestamptz NOT NULL,
    covers_later  boolean NOT NULL,
    forget_at     timestamptz NOT NULL,
    PRIMARY KEY (digest, request_id)
);
CREATE INDEX erasure_subjects_forget_idx ON erasure_subjects (forget_at);

-- The audit trail cannot be emptied either (UPDATE and DELETE are refused already).
CREATE FUNCTION audit_log_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_no_truncate();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
