-- The activity store. Times are UTC nanoseconds since the Unix epoch; dates are
-- `YYYY-MM-DD` text.

CREATE TABLE activities (
    source         TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    action         TEXT,
    occurred_at    INTEGER NOT NULL,
    tier           TEXT,
    -- the company the source named (attribution rule 1), kept so rules can be re-run
    source_domain  TEXT,
    -- the attributed company; NULL while no rule places the activity
    company_domain TEXT,
    attributed_by  TEXT,
    company_name   TEXT,
    actor          TEXT,
    -- only the domain of an email address is ever stored
    email_domain   TEXT,
    package        TEXT,
    version        TEXT,
    url            TEXT,
    properties     TEXT,
    imported_at    INTEGER NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;

-- Scoring reads each company's activities in (occurred_at, source, id) order.
CREATE INDEX activities_by_company
    ON activities (company_domain, occurred_at, source, id)
    WHERE company_domain IS NOT NULL;

-- Re-attribution looks only at activities rules 2 and 3 can move.
CREATE INDEX activities_by_identity
    ON activities (actor, email_domain)
    WHERE source_domain IS NULL;

CREATE TABLE companies (
    domain      TEXT PRIMARY KEY,
    name        TEXT,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Invalid export lines: kept with their reason so nothing is lost silently.
CREATE TABLE quarantine (
    file            TEXT    NOT NULL,
    line            INTEGER NOT NULL,
    raw_hash        TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    raw             TEXT    NOT NULL,
    quarantined_at  INTEGER NOT NULL,
    PRIMARY KEY (file, line, raw_hash)
) WITHOUT ROWID;

-- The scores `score` persisted, one row per company, at one as-of date.
CREATE TABLE scores (
    domain          TEXT PRIMARY KEY,
    as_of           TEXT    NOT NULL,
    stage           TEXT    NOT NULL,
    peak_stage      TEXT    NOT NULL,
    stage_since     TEXT    NOT NULL,
    score_micro     INTEGER NOT NULL,
    first_seen      TEXT    NOT NULL,
    last_seen       TEXT    NOT NULL,
    downloads_30d   INTEGER NOT NULL,
    views_30d       INTEGER NOT NULL,
    community_30d   INTEGER NOT NULL,
    telemetry_30d   INTEGER NOT NULL,
    actors_90d      INTEGER NOT NULL,
    versions_90d    INTEGER NOT NULL,
    upgrading       INTEGER NOT NULL,
    churn_risk      INTEGER NOT NULL,
    events_30d      INTEGER NOT NULL,
    actors_30d      INTEGER NOT NULL,
    events_mom      INTEGER,
    events_wow      INTEGER
) WITHOUT ROWID;

-- Small facts about the store: data version, attribution fingerprint, score inputs.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
