"""Versioned schema migrations for the SQL stores, applied in order on open.

A migration is appended, never edited: `schema_version` records how far a database is.
SQLite and PostgreSQL keep parallel tuples (`MIGRATIONS`, `POSTGRES_MIGRATIONS`) because
their DDL differs (`WITHOUT ROWID`, rowid keys vs identity columns, BLOB vs BYTEA): entry N
of one is entry N of the other, so a change is appended to both with the same number
(tests/store/test_schema_parity.py compares the tables, columns, keys and indexes they build).
SQLite scripts are split on `;`; a PostgreSQL script runs whole (it may hold function bodies).
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: runs, steps, the event log (audit trail), DLQ, signals
    """
    CREATE TABLE definitions (digest TEXT PRIMARY KEY, body BLOB NOT NULL);
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, workflow_version TEXT NOT NULL,
        definition_digest TEXT NOT NULL, inputs BLOB NOT NULL, priority TEXT NOT NULL,
        status TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
        error TEXT, parent_run_id TEXT, cost_usd REAL NOT NULL DEFAULT 0,
        tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0,
        owner TEXT, lease_until REAL, stopping TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_cancel ON runs (run_id) WHERE cancel_requested = 1;
    CREATE INDEX runs_unfinished ON runs (created_at) WHERE status IN ('queued', 'running');
    CREATE INDEX runs_created ON runs (created_at);
    CREATE TABLE steps (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
        attempts INTEGER NOT NULL, started_at REAL, finished_at REAL, error TEXT,
        fallback_used INTEGER NOT NULL, completed_seq INTEGER, wake_at REAL,
        compensation_error TEXT, cost_usd REAL NOT NULL, tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL, output BLOB,
        PRIMARY KEY (run_id, step_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
        ts REAL NOT NULL, run_id TEXT NOT NULL, causation_id TEXT, source TEXT NOT NULL,
        priority TEXT NOT NULL, version INTEGER NOT NULL, payload BLOB NOT NULL
    );
    CREATE INDEX events_run ON events (run_id, seq);
    CREATE TABLE dlq (
        run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
        failed_steps TEXT NOT NULL, added_at REAL NOT NULL
    );
    CREATE TABLE signals (
        signal_id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, name TEXT NOT NULL,
        payload BLOB NOT NULL, created_at REAL NOT NULL, taken INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX signals_pending ON signals (run_id) WHERE taken = 0;
    """,
    # 2: worker heartbeats (`podium workers`)
    """
    CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
        concurrency INTEGER NOT NULL, active INTEGER NOT NULL, state TEXT NOT NULL,
        started_at REAL NOT NULL, heartbeat_at REAL NOT NULL
    );
    """,
    # 3: the llm response cache (exact request hash -> response, with an expiry)
    """
    CREATE TABLE llm_cache (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL);
    """,
    # 4: operator pauses (`podium pause workflow|agent NAME`)
    """
    CREATE TABLE pauses (
        scope TEXT NOT NULL, name TEXT NOT NULL, paused_at REAL NOT NULL,
        PRIMARY KEY (scope, name)
    );
    """,
    # 5: schedules (`podium schedule`): a claimed tick advances next_at by compare-and-set
    """
    CREATE TABLE schedules (
        schedule_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, workflow TEXT NOT NULL,
        definition TEXT NOT NULL, inputs TEXT NOT NULL, kind TEXT NOT NULL, spec TEXT NOT NULL,
        timezone TEXT NOT NULL, next_at REAL, last_fired_at REAL, last_run_id TEXT,
        created_at REAL NOT NULL, pending_tick REAL, pending_since REAL
    );
    CREATE INDEX schedules_due ON schedules (next_at) WHERE next_at IS NOT NULL;
    CREATE INDEX schedules_pending ON schedules (pending_since) WHERE pending_tick IS NOT NULL;
    """,
    # 6: circuit breakers, shared by every engine (`podium circuits`)
    """
    CREATE TABLE circuits (
        key TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL DEFAULT 0,
        successes INTEGER NOT NULL DEFAULT 0, trials INTEGER NOT NULL DEFAULT 0,
        opened_at REAL, cooldown_s REAL NOT NULL DEFAULT 0, forced INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL, trial_until REAL
    );
    """,
    # 7: capacity pools (each engine's share of a pool, expiring unless renewed) and token
    # buckets (rate limits shared by every engine)
    """
    CREATE TABLE pool_shares (
        pool TEXT NOT NULL, holder TEXT NOT NULL, amount REAL NOT NULL, in_use REAL NOT NULL,
        wanted REAL NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (pool, holder)
    ) WITHOUT ROWID;
    CREATE INDEX pool_shares_holder ON pool_shares (holder);
    CREATE TABLE buckets (
        key TEXT PRIMARY KEY, tokens REAL NOT NULL, updated_at REAL NOT NULL,
        rate_per_s REAL NOT NULL, burst REAL NOT NULL
    );
    """,
    # 8: the spend ledger (a row per committed step result with a cost) and budget holds
    # (money set aside by calls in flight); the indexes serve the rolling-window sums
    """
    CREATE TABLE spend (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, idx INTEGER NOT NULL, ts REAL NOT NULL,
        workflow TEXT NOT NULL, model TEXT, tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL, usd REAL NOT NULL,
        PRIMARY KEY (run_id, step_id, idx, ts)
    );
    CREATE INDEX spend_ts ON spend (ts, usd);
    CREATE INDEX spend_workflow_ts ON spend (workflow, ts, usd);
    CREATE TABLE budget_holds (
        hold_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, workflow TEXT NOT NULL,
        usd REAL NOT NULL, holder TEXT NOT NULL, expires_at REAL NOT NULL
    );
    CREATE INDEX budget_holds_holder ON budget_holds (holder);
    """,
    # 9: security: who caused each event (`actor`) and the audit hash chain over the event
    # log (`prev_hash`, `hash`; `audit_head` is the newest link, locked by each append);
    # runs and schedules of API definitions (`trusted` 0); API keys (salted hashes only);
    # the registry of definitions sent over the API
    """
    ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT 'system';
    ALTER TABLE events ADD COLUMN prev_hash TEXT;
    ALTER TABLE events ADD COLUMN hash TEXT;
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL
    );
    INSERT INTO audit_head VALUES (1, 0, printf('%064d', 0));
    ALTER TABLE runs ADD COLUMN trusted INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE schedules ADD COLUMN trusted INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, scope TEXT,
        secret_hash TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL, revoked_at REAL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE workflows (
        name TEXT NOT NULL, digest TEXT NOT NULL, version TEXT NOT NULL,
        registered_at REAL NOT NULL, registered_by TEXT NOT NULL, PRIMARY KEY (name, digest)
    );
    CREATE INDEX workflows_newest ON workflows (name, registered_at);
    """,
    # 10: a failed step's detail: the exception type and a truncated, masked traceback
    """
    ALTER TABLE steps ADD COLUMN error_type TEXT;
    ALTER TABLE steps ADD COLUMN traceback TEXT;
    """,
    # 11: deadlock detection: each engine's view of which steps hold and wait for which pools
    # (JSON, expiring unless published again), and an index for a run's unfinished children
    """
    CREATE TABLE wait_views (
        holder TEXT PRIMARY KEY, view BLOB NOT NULL, expires_at REAL NOT NULL
    );
    CREATE INDEX runs_unfinished_children ON runs (parent_run_id)
        WHERE status IN ('queued', 'running');
    """,
    # 12: the ledger holds every paid call, not only a step's successful result: each row
    # names its attempt and call (`call_id`, '' for a row written with a step's result, so a
    # retried batch still keeps no twin), and `estimated` marks a call whose usage is unknown
    # (no reply came back) and was estimated. SQLite cannot change a key: the table is rebuilt.
    """
    CREATE TABLE spend_v12 (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, idx INTEGER NOT NULL, ts REAL NOT NULL,
        workflow TEXT NOT NULL, model TEXT, tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL, usd REAL NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
        call_id TEXT NOT NULL DEFAULT '', estimated INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, step_id, idx, ts, call_id)
    );
    INSERT INTO spend_v12 (run_id, step_id, idx, ts, workflow, model, tokens_in, tokens_out, usd)
        SELECT run_id, step_id, idx, ts, workflow, model, tokens_in, tokens_out, usd FROM spend;
    DROP TABLE spend;
    ALTER TABLE spend_v12 RENAME TO spend;
    CREATE INDEX spend_ts ON spend (ts, usd);
    CREATE INDEX spend_workflow_ts ON spend (workflow, ts, usd);
    """,
    # 13: the trace context a run was started under (a W3C traceparent), so every engine
    # that runs a step of it continues the same trace
    """
    ALTER TABLE runs ADD COLUMN trace_parent TEXT;
    """,
    # 14: the dashboard's run listing: counts by status (a covering scan, not the table) and
    # pages filtered by status or workflow, newest first, over a large store
    """
    CREATE INDEX runs_status_created ON runs (status, created_at);
    CREATE INDEX runs_workflow_created ON runs (workflow, created_at);
    """,
    # 15: retention (`podium gc`): the audit chain's anchor (the last link pruned from its
    # start, from which `podium audit verify` begins; 0 and 64 zeros while nothing was pruned)
    # and an index to delete a run's signals with it
    """
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL
    );
    INSERT INTO audit_anchor VALUES (1, 0, printf('%064d', 0));
    CREATE INDEX signals_run ON signals (run_id);
    """,
)

POSTGRES_MIGRATIONS: tuple[str, ...] = (
    # 1: as MIGRATIONS[0], plus: event_id is unique (a retried batch cannot log an event
    # twice) and podium_fence() (the fencing rule of Batch.owner)
    """
    CREATE TABLE definitions (digest TEXT PRIMARY KEY, body BYTEA NOT NULL);
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, workflow_version TEXT NOT NULL,
        definition_digest TEXT NOT NULL, inputs BYTEA NOT NULL, priority TEXT NOT NULL,
        status TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,
        error TEXT, parent_run_id TEXT, cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        tokens_in BIGINT NOT NULL DEFAULT 0, tokens_out BIGINT NOT NULL DEFAULT 0,
        owner TEXT, lease_until DOUBLE PRECISION, stopping TEXT,
        cancel_requested BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX runs_cancel ON runs (run_id) WHERE cancel_requested;
    CREATE INDEX runs_unfinished ON runs (created_at) WHERE status IN ('queued', 'running');
    CREATE INDEX runs_created ON runs (created_at);
    CREATE TABLE steps (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
        attempts INTEGER NOT NULL, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,
        error TEXT, fallback_used BOOLEAN NOT NULL, completed_seq INTEGER,
        wake_at DOUBLE PRECISION, compensation_error TEXT, cost_usd DOUBLE PRECISION NOT NULL,
        tokens_in BIGINT NOT NULL, tokens_out BIGINT NOT NULL, output BYTEA,
        PRIMARY KEY (run_id, step_id, idx)
    );
    CREATE TABLE events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, run_id TEXT NOT NULL,
        causation_id TEXT, source TEXT NOT NULL, priority TEXT NOT NULL,
        version INTEGER NOT NULL, payload BYTEA NOT NULL
    );
    CREATE INDEX events_run ON events (run_id, seq);
    CREATE TABLE dlq (
        run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
        failed_steps TEXT NOT NULL, added_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE signals (
        signal_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, run_id TEXT NOT NULL,
        name TEXT NOT NULL, payload BYTEA NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        taken BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX signals_pending ON signals (run_id) WHERE NOT taken;
    -- The fencing rule in the server, so a batch stays one round trip: lock the batch's run
    -- rows (in key order: no deadlocks; claims skip them until the commit) and refuse the
    -- batch, naming the runs as JSON, if another engine holds any of them.
    CREATE FUNCTION podium_fence(ids TEXT[], holder TEXT) RETURNS VOID
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    DECLARE
        lost TEXT[];
    BEGIN
        SELECT array_agg(held.run_id) INTO lost FROM (
            SELECT run_id, owner FROM runs WHERE run_id = ANY(ids) ORDER BY run_id FOR UPDATE
        ) AS held WHERE held.owner IS DISTINCT FROM holder;
        IF lost IS NOT NULL THEN
            RAISE EXCEPTION 'runs held by another engine'
                USING ERRCODE = 'PD001', DETAIL = array_to_json(lost)::text;
        END IF;
    END
    $$;
    """,
    # 2: worker heartbeats (`podium workers`), as MIGRATIONS[1]
    """
    CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
        concurrency INTEGER NOT NULL, active INTEGER NOT NULL, state TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL, heartbeat_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 3: the llm response cache, as MIGRATIONS[2]
    """
    CREATE TABLE llm_cache (
        key TEXT PRIMARY KEY, value BYTEA NOT NULL, expires_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 4: operator pauses (`podium pause workflow|agent NAME`), as MIGRATIONS[3]
    """
    CREATE TABLE pauses (
        scope TEXT NOT NULL, name TEXT NOT NULL, paused_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, name)
    );
    """,
    # 5: schedules (`podium schedule`), as MIGRATIONS[4]
    """
    CREATE TABLE schedules (
        schedule_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, workflow TEXT NOT NULL,
        definition TEXT NOT NULL, inputs TEXT NOT NULL, kind TEXT NOT NULL, spec TEXT NOT NULL,
        timezone TEXT NOT NULL, next_at DOUBLE PRECISION, last_fired_at DOUBLE PRECISION,
        last_run_id TEXT, created_at DOUBLE PRECISION NOT NULL,
        pending_tick DOUBLE PRECISION, pending_since DOUBLE PRECISION
    );
    CREATE INDEX schedules_due ON schedules (next_at) WHERE next_at IS NOT NULL;
    CREATE INDEX schedules_pending ON schedules (pending_since) WHERE pending_tick IS NOT NULL;
    """,
    # 6: circuit breakers (`podium circuits`), as MIGRATIONS[5]
    """
    CREATE TABLE circuits (
        key TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL DEFAULT 0,
        successes INTEGER NOT NULL DEFAULT 0, trials INTEGER NOT NULL DEFAULT 0,
        opened_at DOUBLE PRECISION, cooldown_s DOUBLE PRECISION NOT NULL DEFAULT 0,
        forced BOOLEAN NOT NULL DEFAULT false, updated_at DOUBLE PRECISION NOT NULL,
        trial_until DOUBLE PRECISION
    );
    """,
    # 7: capacity pools and token buckets, as MIGRATIONS[6]
    """
    CREATE TABLE pool_shares (
        pool TEXT NOT NULL, holder TEXT NOT NULL, amount DOUBLE PRECISION NOT NULL,
        in_use DOUBLE PRECISION NOT NULL, wanted DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (pool, holder)
    );
    CREATE INDEX pool_shares_holder ON pool_shares (holder);
    CREATE TABLE buckets (
        key TEXT PRIMARY KEY, tokens DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, rate_per_s DOUBLE PRECISION NOT NULL,
        burst DOUBLE PRECISION NOT NULL
    );
    """,
    # 8: the spend ledger and budget holds, as MIGRATIONS[7]
    """
    CREATE TABLE spend (
        run_id TEXT NOT NULL, step_id TEXT NOT NULL, idx INTEGER NOT NULL,
        ts DOUBLE PRECISION NOT NULL, workflow TEXT NOT NULL, model TEXT,
        tokens_in BIGINT NOT NULL, tokens_out BIGINT NOT NULL, usd DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, step_id, idx, ts)
    );
    CREATE INDEX spend_ts ON spend (ts) INCLUDE (usd);
    CREATE INDEX spend_workflow_ts ON spend (workflow, ts) INCLUDE (usd);
    CREATE TABLE budget_holds (
        hold_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, workflow TEXT NOT NULL,
        usd DOUBLE PRECISION NOT NULL, holder TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX budget_holds_holder ON budget_holds (holder);
    """,
    # 9: security, as MIGRATIONS[8], plus podium_append_events(): the chain's appends in the
    # server, so a batch stays one round trip. It locks the head row (appends of concurrent
    # engines queue there, so sequence numbers commit in order), skips events already stored
    # (a retried batch), and links each new one: hash = sha256(prev_hash || content_hash ||
    # seq), content_hash computed by the writer over every column (podium.store.audit).
    """
    ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT 'system';
    ALTER TABLE events ADD COLUMN prev_hash TEXT;
    ALTER TABLE events ADD COLUMN hash TEXT;
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL
    );
    INSERT INTO audit_head VALUES (1, 0, repeat('0', 64));
    ALTER TABLE runs ADD COLUMN trusted BOOLEAN NOT NULL DEFAULT true;
    ALTER TABLE schedules ADD COLUMN trusted BOOLEAN NOT NULL DEFAULT true;
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, scope TEXT,
        secret_hash TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION, revoked_at DOUBLE PRECISION, created_by TEXT NOT NULL
    );
    CREATE TABLE workflows (
        name TEXT NOT NULL, digest TEXT NOT NULL, version TEXT NOT NULL,
        registered_at DOUBLE PRECISION NOT NULL, registered_by TEXT NOT NULL,
        PRIMARY KEY (name, digest)
    );
    CREATE INDEX workflows_newest ON workflows (name, registered_at);
    CREATE FUNCTION podium_append_events(
        ids TEXT[], types TEXT[], tss FLOAT8[], runs TEXT[], causes TEXT[], sources TEXT[],
        prios TEXT[], versions INT4[], payloads BYTEA[], actors TEXT[], contents TEXT[]
    ) RETURNS VOID
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    DECLARE
        head_seq BIGINT;
        head_hash TEXT;
        known TEXT[];
        picks INT[] := '{}';
        seqs BIGINT[] := '{}';
        prevs TEXT[] := '{}';
        hashes TEXT[] := '{}';
    BEGIN
        IF coalesce(array_length(ids, 1), 0) = 0 THEN
            RETURN;
        END IF;
        SELECT seq, hash INTO head_seq, head_hash FROM audit_head WHERE id = 1 FOR UPDATE;
        SELECT coalesce(array_agg(event_id), '{}') INTO known FROM events
            WHERE event_id = ANY(ids);
        FOR i IN 1 .. array_length(ids, 1) LOOP
            CONTINUE WHEN ids[i] = ANY(known);
            head_seq := head_seq + 1;
            picks := picks || i;
            seqs := seqs || head_seq;
            prevs := prevs || head_hash;
            head_hash := encode(
                sha256(convert_to(head_hash || contents[i] || head_seq::text, 'UTF8')), 'hex');
            hashes := hashes || head_hash;
        END LOOP;
        INSERT INTO events (seq, event_id, event_type, ts, run_id, causation_id, source,
                            priority, version, payload, actor, prev_hash, hash)
            OVERRIDING SYSTEM VALUE
            SELECT s, ids[k], types[k], tss[k], runs[k], causes[k], sources[k], prios[k],
                   versions[k], payloads[k], actors[k], p, h
            FROM unnest(seqs, picks, prevs, hashes) AS u(s, k, p, h);
        UPDATE audit_head SET seq = head_seq, hash = head_hash WHERE id = 1;
    END
    $$;
    """,
    # 10: a failed step's detail, as MIGRATIONS[9]
    """
    ALTER TABLE steps ADD COLUMN error_type TEXT;
    ALTER TABLE steps ADD COLUMN traceback TEXT;
    """,
    # 11: deadlock detection, as MIGRATIONS[10]
    """
    CREATE TABLE wait_views (
        holder TEXT PRIMARY KEY, view BYTEA NOT NULL, expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX runs_unfinished_children ON runs (parent_run_id)
        WHERE status IN ('queued', 'running');
    """,
    # 12: every paid call in the ledger, as MIGRATIONS[11]
    """
    ALTER TABLE spend ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE spend ADD COLUMN call_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE spend ADD COLUMN estimated BOOLEAN NOT NULL DEFAULT false;
    ALTER TABLE spend DROP CONSTRAINT spend_pkey;
    ALTER TABLE spend ADD PRIMARY KEY (run_id, step_id, idx, ts, call_id);
    """,
    # 13: a run's trace context, as MIGRATIONS[12]
    """
    ALTER TABLE runs ADD COLUMN trace_parent TEXT;
    """,
    # 14: the dashboard's run listing, as MIGRATIONS[13]
    """
    CREATE INDEX runs_status_created ON runs (status, created_at);
    CREATE INDEX runs_workflow_created ON runs (workflow, created_at);
    """,
    # 15: retention, as MIGRATIONS[14]
    """
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL
    );
    INSERT INTO audit_anchor VALUES (1, 0, repeat('0', 64));
    CREATE INDEX signals_run ON signals (run_id);
    """,
)
