-- depends: 0002_held_index
-- telephony: what the audio probe reads while the recording streams into the vault. Nullable:
-- older recordings, and formats that do not say, have none.
ALTER TABLE recordings ADD COLUMN duration_seconds double precision;
ALTER TABLE recordings ADD COLUMN channels smallint;
