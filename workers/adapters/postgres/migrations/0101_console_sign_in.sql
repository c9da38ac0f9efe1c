-- depends: 0006_language
-- Sign-in throttling by tallies counted before the password is checked, one row per key
-- (a keyed digest of an account, an address, or both), updated under its row lock; the
-- failure list it replaces was counted after the check, so parallel attempts slipped past.

DROP TABLE console_login_failures;

CREATE TABLE console_login_tallies (
    key           bytea PRIMARY KEY,
    count         integer NOT NULL CHECK (count >= 0),
    last_at       timestamptz,
    paused_until  timestamptz
);
CREATE INDEX console_login_tallies_last_idx ON console_login_tallies (last_at);

-- An account that signs in through OpenID Connect is bound to the provider's (issuer,
-- subject), never to the name the provider happens to show; a password account is never
-- bound. Accounts made by earlier versions (by name) are bound at their next sign-in.
CREATE TABLE console_identities (
    issuer    text NOT NULL,
    subject   text NOT NULL,
    username  text NOT NULL UNIQUE REFERENCES console_users (username) ON DELETE CASCADE,
    bound_at  timestamptz NOT NULL,
    PRIMARY KEY (issuer, subject)
);
