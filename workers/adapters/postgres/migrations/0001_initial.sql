-- callvault schema v1. Personal data live only in customer_sealed (encrypted with the
-- recording's data key) and as keyed digests in subject_keys; both go at purge.

CREATE TABLE recordings (
    recording_id      uuid PRIMARY KEY,
    call_id           text NOT NULL UNIQUE,
    tenant            text NOT NULL,
    direction         text NOT NULL,
    agent_id          text,
    started_at        timestamptz NOT NULL,
    collected_at      timestamptz NOT NULL,
    retention_due_at  timestamptz NOT NULL,
    policy            text NOT NULL,
    status            text NOT NULL CHECK (status IN ('storing', 'stored', 'purging', 'purged')),
    object_key        text NOT NULL,
    stored_at         timestamptz,
    size_bytes        bigint,
    sha256            text,
    content_type      text,
    wrapped_key       bytea,
    customer_sealed   bytea,
    restricted        boolean NOT NULL DEFAULT false,
    held              boolean NOT NULL DEFAULT false,
    due_announced_at  timestamptz,
    purge_reason      text,
    versions_deleted  integer,
    purged_at         timestamptz,
    source_event_id   text
);

-- The scheduler's only query: what is due, not held, not yet announced. A partial index keeps
-- its cost proportional to the due rows, not to the millions that are not due.
CREATE INDEX recordings_due_idx ON recordings (retention_due_at)
    WHERE status = 'stored' AND NOT held AND due_announced_at IS NULL;
CREATE INDEX recordings_overdue_idx ON recordings (retention_due_at)
    WHERE status IN ('stored', 'purging') AND NOT held;
CREATE INDEX recordings_tenant_idx ON recordings (tenant, policy) WHERE status = 'stored';

CREATE TABLE subject_keys (
    digest        bytea NOT NULL,
    recording_id  uuid NOT NULL REFERENCES recordings (recording_id) ON DELETE CASCADE,
    PRIMARY KEY (digest, recording_id)
);
CREATE INDEX subject_keys_recording_idx ON subject_keys (recording_id);

CREATE TABLE holds (
    hold_id      text PRIMARY KEY,
    reason       text NOT NULL,
    case_ref     text,
    scope_kind   text NOT NULL,
    targets      text[] NOT NULL DEFAULT '{}',
    placed_at    timestamptz,
    released_at  timestamptz
);
CREATE TABLE hold_subject_keys (
    digest   bytea NOT NULL,
    hold_id  text NOT NULL REFERENCES holds (hold_id) ON DELETE CASCADE,
    PRIMARY KEY (digest, hold_id)
);
CREATE INDEX holds_targets_idx ON holds USING gin (targets) WHERE released_at IS NULL;

CREATE TABLE discards (
    call_id       text PRIMARY KEY,
    tenant        text NOT NULL,
    discarded_at  timestamptz NOT NULL
);

CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    topic         text NOT NULL,
    key           text,
    event         jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    action     text NOT NULL,
    entity_id  text NOT NULL,
    details    jsonb NOT NULL,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);
-- Append-only: the application role never needs UPDATE or DELETE on the trail.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE dsr_requests (
    request_id      text PRIMARY KEY,
    dsr_type        text NOT NULL,
    status          text NOT NULL,
    received_at     timestamptz,
    due_at          timestamptz,
    completed_at    timestamptz,
    pending         text[] NOT NULL DEFAULT '{}',
    result          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX dsr_open_idx ON dsr_requests (due_at) WHERE cardinality(pending) > 0;

CREATE TABLE exports (
    object_key  text PRIMARY KEY,
    request_id  text NOT NULL,
    expires_at  timestamptz NOT NULL
);
