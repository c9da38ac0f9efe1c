-- depends: 0001_initial
-- The gauges ask every few seconds how many recordings a hold keeps; a partial index over the
-- (few) held rows answers without scanning millions of others.
CREATE INDEX recordings_held_idx ON recordings (recording_id) WHERE held AND status <> 'purged';
