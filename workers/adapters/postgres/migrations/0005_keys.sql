-- depends: 0100_console
-- Keys: the check value of every key this database was set up with (a master key by id, the
-- hash key, each signing key's public key), so that a process started with another key
-- refuses to start; and the identifiers of a subject hold, sealed at rest, so that a hash-key
-- rotation can re-key the hold (its digests alone cannot be re-computed).

CREATE TABLE key_checks (
    kind        text NOT NULL CHECK (kind IN ('master', 'hash', 'signing')),
    key_id      text NOT NULL,  -- the master or signing key's id; 'current' / 'next' for hash
    value       text NOT NULL,  -- HMAC of a fixed text under the key; a signing public key
    created_at  timestamptz NOT NULL,
    retired_at  timestamptz,     -- a master key no data key is wrapped under any more
    PRIMARY KEY (kind, key_id)
);

ALTER TABLE holds ADD COLUMN subject_sealed bytea;  -- cleared when the hold is released
