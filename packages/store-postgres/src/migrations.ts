import type { SchemaNames } from './identifiers.js';

/**
 * One versioned step of the schema. Steps live in code (not in `.sql` files) so that they
 * survive bundling; each returns the SQL for a given schema and runs in the migration
 * transaction. Published steps are never edited: change the schema with a new step.
 */
export interface Migration {
  /** Ordered, unique, never renamed: it is what the migrations table records. */
  readonly name: string;
  sql(names: SchemaNames): string[];
}

const STATUSES = `'created', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'`;

/** Every migration this package knows, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    name: '0001_audit_trail',
    sql: (n) => [
      `CREATE TABLE ${n.portals} (
        name text PRIMARY KEY,
        first_seen_at timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz NOT NULL DEFAULT now()
      )`,
      `COMMENT ON TABLE ${n.portals} IS 'Portals named by recorded jobs'`,
      `CREATE TABLE ${n.jobs} (
        id text PRIMARY KEY,
        ord bigserial NOT NULL,
        status text NOT NULL CHECK (status IN (${STATUSES})),
        mode text NOT NULL CHECK (mode IN ('copy', 'move')),
        source_portal text NOT NULL REFERENCES ${n.portals} (name),
        source_path text NOT NULL,
        destination_portal text NOT NULL REFERENCES ${n.portals} (name),
        destination_path text NOT NULL,
        strategy text CHECK (strategy IN ('DIRECT', 'ZIP_FIRST')),
        n_files bigint NOT NULL DEFAULT 0,
        total_bytes bigint NOT NULL DEFAULT 0,
        files_copied bigint NOT NULL DEFAULT 0,
        bytes_copied bigint NOT NULL DEFAULT 0,
        operator text NOT NULL,
        host text NOT NULL,
        created_at timestamptz NOT NULL,
        created_ts text NOT NULL,
        finished_at timestamptz,
        finished_ts text,
        duration_ms bigint,
        error jsonb,
        last_seq integer NOT NULL,
        last_hash text NOT NULL
      )`,
      `COMMENT ON TABLE ${n.jobs} IS 'Job state derived from job_events; last_hash is the head of the job''s hash chain'`,
      `COMMENT ON COLUMN ${n.jobs}.created_ts IS 'created_at exactly as the event recorded it'`,
      `CREATE INDEX jobs_created_idx ON ${n.jobs} (created_at DESC, ord DESC)`,
      `CREATE INDEX jobs_status_idx ON ${n.jobs} (status, created_at DESC)`,
      `CREATE INDEX jobs_mode_idx ON ${n.jobs} (mode, created_at DESC)`,
      `CREATE INDEX jobs_strategy_idx ON ${n.jobs} (strategy, created_at DESC)`,
      `CREATE TABLE ${n.events} (
        record_no bigserial PRIMARY KEY,
        id uuid NOT NULL UNIQUE,
        job_id text NOT NULL REFERENCES ${n.jobs} (id),
        seq integer NOT NULL,
        type text NOT NULL,
        ts timestamptz NOT NULL,
        payload jsonb NOT NULL,
        prev_hash text NOT NULL,
        hash text NOT NULL,
        UNIQUE (job_id, seq)
      )`,
      `COMMENT ON TABLE ${n.events} IS 'Append-only audit trail: hash = sha256(prev_hash || canonical JSON of payload), chained per job'`,
      `CREATE INDEX job_events_ts_idx ON ${n.events} (ts)`,
      // Append-only by construction: rows are inserted, never changed or removed. An owner
      // can still disable the trigger; the hash chain is what makes that visible.
      `CREATE FUNCTION ${n.quoted}.refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'ketter: the audit trail is append-only (% on %)', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
        END
      $$`,
      `CREATE TRIGGER job_events_append_only BEFORE UPDATE OR DELETE ON ${n.events}
        FOR EACH ROW EXECUTE FUNCTION ${n.quoted}.refuse_audit_change()`,
      `CREATE TRIGGER job_events_no_truncate BEFORE TRUNCATE ON ${n.events}
        FOR EACH STATEMENT EXECUTE FUNCTION ${n.quoted}.refuse_audit_change()`,
      `CREATE TABLE ${n.leases} (
        job_id text PRIMARY KEY,
        source text NOT NULL,
        destination text NOT NULL,
        owner_host text NOT NULL,
        owner_pid integer NOT NULL,
        token uuid NOT NULL UNIQUE,
        acquired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        expires_at timestamptz NOT NULL
      )`,
      `COMMENT ON TABLE ${n.leases} IS 'Path locks of running jobs; renewed by heartbeat, reclaimed once expired'`,
      `CREATE INDEX leases_expires_idx ON ${n.leases} (expires_at)`,
      // Same rule as pathsOverlap in @ketter/core: equal, ancestor or descendant, by whole segments.
      `CREATE FUNCTION ${n.overlaps}(a text, b text) RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
          SELECT x = y OR starts_with(x, y || '/') OR starts_with(y, x || '/')
          FROM (SELECT rtrim(a, '/') AS x, rtrim(b, '/') AS y) AS k
        $$`,
    ],
  },
  {
    // Recovery asks which ended jobs may have left staging; reading every ended job's
    // events to find out made each run slower as the history grew.
    name: '0002_job_staging',
    sql: (n) => [
      `ALTER TABLE ${n.jobs} ADD COLUMN staging jsonb NOT NULL DEFAULT '[]'::jsonb`,
      `COMMENT ON COLUMN ${n.jobs}.staging IS 'Hidden paths the job created at its destination and has not recorded removing'`,
      // Jobs recorded before: the same rule as applyEvent, over their events.
      `UPDATE ${n.jobs} AS j SET staging = s.paths
       FROM (
         SELECT p.job_id, jsonb_agg(x.path ORDER BY x.k) AS paths
         FROM (
           SELECT DISTINCT ON (job_id) job_id, payload->>'staging' AS staging
           FROM ${n.events} WHERE type = 'preflight.passed' AND payload->>'staging' <> ''
           ORDER BY job_id, seq
         ) AS p
         JOIN ${n.jobs} AS jj ON jj.id = p.job_id
         CROSS JOIN LATERAL (
           SELECT 0 AS k, p.staging AS path
           UNION ALL
           SELECT 1, regexp_replace(p.staging, '[^/]*$', '') || '.ketter-' || p.job_id || '.archive.zip'
           WHERE jj.strategy = 'ZIP_FIRST'
         ) AS x
         WHERE NOT EXISTS (SELECT 1 FROM ${n.events} AS c WHERE c.job_id = p.job_id AND c.type = 'job.committed')
           AND NOT EXISTS (
             SELECT 1 FROM ${n.events} AS r
             WHERE r.job_id = p.job_id AND r.type = 'staging.removed' AND r.payload->>'path' = x.path
           )
         GROUP BY p.job_id
       ) AS s
       WHERE j.id = s.job_id`,
      `CREATE INDEX jobs_staging_idx ON ${n.jobs} (status, created_at DESC) WHERE staging <> '[]'::jsonb`,
    ],
  },
];

/** Name of the newest migration this package knows. */
export const LATEST_MIGRATION: string = MIGRATIONS[MIGRATIONS.length - 1]!.name;
