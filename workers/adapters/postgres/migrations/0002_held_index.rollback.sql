DROP INDEX IF EXISTS recordings_held_idx;
