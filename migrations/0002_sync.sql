-- Sync state: what each sink's CRM holds as far as we know, and the sync log.

-- The CRM record a company matched, per sink (HubSpot company id, Salesforce Account id).
-- Cached because HubSpot's `domain` is not unique and searching costs rate limit.
CREATE TABLE crm_records (
    connector   TEXT    NOT NULL,
    domain      TEXT    NOT NULL,
    crm_id      TEXT    NOT NULL,
    matched_at  INTEGER NOT NULL,
    PRIMARY KEY (connector, domain)
) WITHOUT ROWID;

-- The last field values the CRM confirmed, per sink and company, and the OQL stage they
-- carried (stage changes, and so triggers, are detected against it).
CREATE TABLE crm_state (
    connector    TEXT    NOT NULL,
    domain       TEXT    NOT NULL,
    fields       TEXT    NOT NULL,   -- JSON object: CRM field -> value
    stage        TEXT,
    changes      INTEGER NOT NULL DEFAULT 0,  -- stage changes accepted so far
    accepted_at  INTEGER NOT NULL,
    PRIMARY KEY (connector, domain)
) WITHOUT ROWID;

-- Records that failed: retried every run until `dead_after` attempts, then parked.
CREATE TABLE sync_failures (
    connector   TEXT    NOT NULL,
    domain      TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    dead        INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (connector, domain)
) WITHOUT ROWID;

-- Trigger firings: enqueued in the transaction that records the accepted stage change,
-- so each change fires each trigger once, whatever crashes in between.
CREATE TABLE trigger_firings (
    key          TEXT PRIMARY KEY,   -- idempotency key, also sent to webhooks
    connector    TEXT    NOT NULL,
    domain       TEXT    NOT NULL,
    trigger      INTEGER NOT NULL,   -- index in the mapping's triggers
    action       TEXT    NOT NULL,   -- JSON of the action
    from_stage   TEXT,
    to_stage     TEXT    NOT NULL,
    event        TEXT    NOT NULL,   -- JSON payload captured at the change
    status       TEXT    NOT NULL,   -- pending | fired | failed | dead
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    fired_at     INTEGER
) WITHOUT ROWID;

CREATE INDEX trigger_firings_pending ON trigger_firings (connector, status);

CREATE TABLE sync_runs (
    id                INTEGER PRIMARY KEY,
    connector         TEXT    NOT NULL,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    status            TEXT    NOT NULL,  -- running | ok | failed
    planned           INTEGER NOT NULL DEFAULT 0,
    sent              INTEGER NOT NULL DEFAULT 0,
    accepted          INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    api_calls         INTEGER NOT NULL DEFAULT 0,
    rate_limit_waits  INTEGER NOT NULL DEFAULT 0,
    error             TEXT
);

CREATE TABLE sync_records (
    run_id     INTEGER NOT NULL REFERENCES sync_runs (id),
    connector  TEXT    NOT NULL,
    domain     TEXT    NOT NULL,
    crm_id     TEXT,
    before     TEXT,               -- JSON object of the fields sent, as they were
    after      TEXT,               -- JSON object of the fields sent
    outcome    TEXT    NOT NULL,   -- accepted | created | failed | dead | ambiguous | not_found | trigger
    error      TEXT,
    at         INTEGER NOT NULL
);

CREATE INDEX sync_records_by_run ON sync_records (run_id);
CREATE INDEX sync_records_by_outcome ON sync_records (connector, outcome, at);
