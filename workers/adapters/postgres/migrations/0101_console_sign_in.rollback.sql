DROP TABLE IF EXISTS console_identities;
DROP TABLE IF EXISTS console_login_tallies;
CREATE TABLE IF NOT EXISTS console_login_failures (
    key  bytea NOT NULL,
    at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_login_failures_idx ON console_login_failures (key, at);
