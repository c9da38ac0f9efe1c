-- depends: 0003_unit_of_work
-- Purpose-bound access (callvault serve): staff accounts, API tokens, sign-in throttling, the
-- access index of the audit trail and the disclosure register. No customer data here: accesses
-- and disclosures name recordings by id; throttle keys are keyed digests.

CREATE TABLE console_users (
    username       text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('qa', 'complaints', 'dpo', 'admin')),
    password_hash  text,  -- Argon2id; NULL for accounts that sign in through OpenID Connect
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL
);

CREATE TABLE console_tokens (
    token_id     text PRIMARY KEY,
    username     text NOT NULL REFERENCES console_users (username) ON DELETE CASCADE,
    secret_hash  bytea NOT NULL,  -- SHA-256 of the token's 256-bit random secret
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX console_tokens_user_idx ON console_tokens (username);

CREATE TABLE console_login_failures (
    key  bytea NOT NULL,  -- HMAC of a user name or a client address
    at   timestamptz NOT NULL
);
CREATE INDEX console_login_failures_idx ON console_login_failures (key, at);

-- One row per audit entry of action 'access', so that a recording's consultations are found
-- by index; the hash-chained audit_log stays the proof.
CREATE TABLE access_log (
    audit_seq     bigint PRIMARY KEY REFERENCES audit_log (seq),
    at            timestamptz NOT NULL,
    username      text NOT NULL,
    role          text NOT NULL,
    purpose       text NOT NULL,
    case_ref      text,
    recording_id  uuid NOT NULL,
    kind          text NOT NULL
);
CREATE INDEX access_log_recording_idx ON access_log (recording_id, at);
CREATE INDEX access_log_at_idx ON access_log (at);
CREATE TRIGGER access_log_no_change BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE disclosures (
    disclosure_id      uuid PRIMARY KEY,
    recipient          text NOT NULL,
    recipient_kind     text NOT NULL
        CHECK (recipient_kind IN ('law_enforcement', 'telecom_provider', 'other')),
    legal_basis        text NOT NULL,
    reference          text NOT NULL,
    disclosed_by       text NOT NULL,
    disclosed_at       timestamptz NOT NULL,
    export_expires_at  timestamptz
);
CREATE INDEX disclosures_at_idx ON disclosures (disclosed_at);
-- No foreign key to recordings: the register outlives a purged recording (Art. 19 needs it).
CREATE TABLE disclosure_recordings (
    disclosure_id  uuid NOT NULL REFERENCES disclosures (disclosure_id) ON DELETE CASCADE,
    recording_id   uuid NOT NULL,
    PRIMARY KEY (disclosure_id, recording_id)
);
CREATE INDEX disclosure_recordings_recording_idx ON disclosure_recordings (recording_id);

-- The overview's per-day counts read these without scanning every recording.
CREATE INDEX recordings_stored_at_idx ON recordings (stored_at);
CREATE INDEX recordings_purged_at_idx ON recordings (purged_at) WHERE purged_at IS NOT NULL;
