-- depends: 0002_held_index
-- The unit of work: column-owned updates, follow-up rows, an outbox that forgets what it
-- published, keyed call digests instead of raw call ids in what outlives a recording, sealed
-- hold texts, the retention policy in force, and the recordings each export contains.

-- An upload is no longer claimed by a row before it starts: a recording row exists only once
-- its audio is stored. Claims left by the previous version are dropped (their objects, if
-- any, are orphans that reconcile removes).
DELETE FROM recordings WHERE status = 'storing';
ALTER TABLE recordings DROP CONSTRAINT recordings_status_check;
ALTER TABLE recordings ADD CONSTRAINT recordings_status_check
    CHECK (status IN ('stored', 'purging', 'purged'));
ALTER TABLE recordings ALTER COLUMN call_id DROP NOT NULL;
ALTER TABLE recordings
    ADD COLUMN call_digest text,
    ADD COLUMN object_version text,
    ADD COLUMN duration_seconds double precision,
    ADD COLUMN channels integer,
    ADD COLUMN master_key_id text,
    ADD COLUMN legal_hold boolean NOT NULL DEFAULT false;
-- Filled for rows of the previous version by `callvault migrate` (it needs the hash key).
CREATE UNIQUE INDEX recordings_call_digest_key ON recordings (call_digest);
-- Purges that should be over: rows left purging, and announced rows still stored.
CREATE INDEX recordings_stalled_idx ON recordings (due_announced_at)
    WHERE status = 'purging' OR (status = 'stored' AND due_announced_at IS NOT NULL);

-- Discards are remembered by a keyed digest of the call id only; the old table kept raw
-- call ids (a repeat of a call discarded before this version is simply discarded again).
DROP TABLE discards;
CREATE TABLE discarded_calls (
    call_digest     text PRIMARY KEY,
    tenant          text NOT NULL,
    discarded_at    timestamptz NOT NULL,
    landing_sha256  text
);

-- Staff's free text is sealed at rest (see workers/adapters/crypto.py TextSealer).
ALTER TABLE holds
    ALTER COLUMN reason DROP NOT NULL,
    ADD COLUMN reason_sealed bytea,
    ADD COLUMN case_ref_sealed bytea;

-- The outbox keeps an event only until it is published.
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX outbox_unpublished_idx;
ALTER TABLE outbox DROP COLUMN published_at;

CREATE TABLE followups (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    not_before  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    failed_at   timestamptz
);
CREATE INDEX followups_due_idx ON followups (not_before, id) WHERE failed_at IS NULL;

CREATE TABLE retention_policies (
    tenant      text PRIMARY KEY,  -- '*' is the default policy
    policy      text NOT NULL,
    applied_at  timestamptz NOT NULL
);

ALTER TABLE exports ADD COLUMN recording_ids text[] NOT NULL DEFAULT '{}';
CREATE INDEX exports_recordings_idx ON exports USING gin (recording_ids);

ALTER TABLE dsr_requests
    ADD COLUMN matched text[] NOT NULL DEFAULT '{}',
    ADD COLUMN tenant text;
CREATE INDEX dsr_pending_idx ON dsr_requests USING gin (pending) WHERE cardinality(pending) > 0;

-- Dead letters an operator discarded: never replayed, their landing audio deleted.
CREATE TABLE deadletters_discarded (
    topic         text NOT NULL,
    partition     integer NOT NULL,
    "offset"      bigint NOT NULL,
    discarded_at  timestamptz NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
