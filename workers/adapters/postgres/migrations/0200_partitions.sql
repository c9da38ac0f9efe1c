-- depends: 0102_console_scopes
-- Partitioned tables for a year of a national operator's calls (docs/partitions.md): the
-- functions the partitioned layout lives by, and the record of audit verification. The
-- tables themselves are partitioned after this migration, by `callvault migrate`
-- (workers/adapters/postgres/partitions.py): at once on an empty database, online on a
-- populated one.

-- The range of each partition of a table partitioned by range, as text (NULL for MINVALUE /
-- MAXVALUE), from the catalogue's own rendering of the bound.
CREATE FUNCTION callvault_partition_bounds(parent regclass)
RETURNS TABLE (partition regclass, is_default boolean, lower_bound text, upper_bound text)
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
    SELECT c.oid::regclass, b.expr = 'DEFAULT',
           NULLIF(btrim(m[1], ''''), 'MINVALUE'), NULLIF(btrim(m[2], ''''), 'MAXVALUE')
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS expr) b
    LEFT JOIN LATERAL (SELECT regexp_match(b.expr,
        'FROM \((MINVALUE|''[^'']*'')\) TO \((MAXVALUE|''[^'']*'')\)') AS m) r ON true
    WHERE i.inhparent = parent
$$;

-- One partition [lower, upper) of parent, made empty beside it and then attached (ATTACH
-- takes only SHARE UPDATE EXCLUSIVE on the parent: reads and writes go on; CREATE TABLE ...
-- PARTITION OF would take ACCESS EXCLUSIVE). Rows of that range that fell into the DEFAULT
-- partition move into it first. NULL when a partition covers the range already.
CREATE FUNCTION callvault_add_partition(parent regclass, name text, key text, lower text,
                                        upper text)
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    fallback regclass := (SELECT partition FROM callvault_partition_bounds(parent)
                          WHERE is_default);
    strays boolean := false;
BEGIN
    IF to_regclass(format('public.%I', name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE public.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       name, parent);
        IF fallback IS NOT NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= %L AND %I < %L)',
                           fallback, key, lower, key, upper) INTO strays;
        END IF;
        IF strays THEN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', fallback);
            EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L '
                           'RETURNING *) INSERT INTO public.%I SELECT * FROM moved',
                           fallback, key, lower, key, upper, name);
        END IF;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                       parent, name, lower, upper);
    EXCEPTION WHEN invalid_object_definition THEN
        RETURN NULL;  -- an older, wider partition (the one an online conversion attached)
    END;
    RETURN name;
END $$;

-- Partitions made ahead, called by the scheduler every hour (and by `callvault migrate`):
-- recordings by month of collection, from last month to three months ahead, and for any
-- month whose rows fell into the DEFAULT partition; the audit trail by ranges of
-- `audit_range` entries, the head's range and the next. The workers' role may run it, not
-- create tables: it runs as the schema owner, with a short lock timeout (a missed hour is
-- retried; the partitions exist months ahead).
CREATE FUNCTION callvault_ensure_partitions(at timestamptz DEFAULT now(),
                                            audit_range bigint DEFAULT 10000000)
RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public SET "TimeZone" = 'UTC' SET lock_timeout = '2s' AS $$
DECLARE
    made text[] := '{}';
    month timestamp;
    head bigint;
    first bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7067636172740001);  -- one maker at a time
    IF (SELECT relkind FROM pg_class WHERE oid = 'public.recordings'::regclass) = 'p' THEN
        FOR month IN
            SELECT generate_series(date_trunc('month', at AT TIME ZONE 'UTC')
                                       - interval '1 month',
                                   date_trunc('month', at AT TIME ZONE 'UTC')
                                       + interval '3 months', interval '1 month')
            UNION
            SELECT DISTINCT date_trunc('month', collected_at AT TIME ZONE 'UTC')
            FROM recordings_default
            ORDER BY 1
        LOOP
            made := made || callvault_add_partition('recordings',
                to_char(month, '"recordings_y"YYYY"m"MM'), 'collected_at',
                (month AT TIME ZONE 'UTC')::text,
                ((month + interval '1 month') AT TIME ZONE 'UTC')::text);
        END LOOP;
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = 'public.audit_log'::regclass) = 'p' THEN
        SELECT seq INTO head FROM audit_log ORDER BY seq DESC LIMIT 1;
        FOR first IN
            SELECT (coalesce(head, 0) / audit_range + n) * audit_range
            FROM generate_series(0, 1) n
            UNION
            SELECT DISTINCT seq / audit_range * audit_range FROM audit_log_default
            ORDER BY 1
        LOOP
            made := made || callvault_add_partition('audit_log',
                'audit_log_p' || lpad((first / audit_range)::text, 6, '0'), 'seq',
                first::text, (first + audit_range)::text);
        END LOOP;
    END IF;
    RETURN array_remove(made, NULL);
END $$;

-- Rows each partitioned table's DEFAULT partition holds (the metric an alert watches).
CREATE FUNCTION callvault_stray_rows() RETURNS TABLE (parent text, stray bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    fallback regclass;
BEGIN
    FOREACH parent IN ARRAY ARRAY['recordings', 'audit_log'] LOOP
        fallback := (SELECT b.partition FROM callvault_partition_bounds(
                         to_regclass('public.' || parent)) b WHERE b.is_default);
        IF fallback IS NOT NULL THEN
            EXECUTE format('SELECT count(*) FROM %s', fallback) INTO stray;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;
REVOKE ALL ON FUNCTION callvault_ensure_partitions(timestamptz, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION callvault_stray_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION callvault_add_partition(regclass, text, text, text, text) FROM PUBLIC;

-- A call is stored once, whatever month its repeat says it ended in: unique keys of a
-- partitioned table must hold the partition key, so (call_digest, collected_at) is unique
-- per partition and this guard, on every insert, skips a row whose call (or recording id)
-- any partition holds already - as ON CONFLICT DO NOTHING would. Concurrent inserts of one
-- call queue on an advisory lock of its digest, so the second sees the first once committed.
CREATE FUNCTION recordings_one_per_call() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1667329132, hashtext(NEW.call_digest));
    IF EXISTS (SELECT 1 FROM recordings
               WHERE call_digest = NEW.call_digest OR recording_id = NEW.recording_id) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$;

-- How far `callvault audit verify` has proven the chain, per audit partition: the newest
-- entry verified from the one before (ultimately from the genesis), signed with callvault's
-- signing key, so that the next verification starts there. A forged or replayed row does
-- not verify or only makes the next check longer.
CREATE TABLE audit_verified (
    partition    text PRIMARY KEY,
    last_seq     bigint NOT NULL,
    last_hash    bytea NOT NULL,
    verified_at  timestamptz NOT NULL,
    signed       jsonb NOT NULL
);
