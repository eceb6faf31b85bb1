-- What a CRM answered to lookups that changed nothing, kept so that an unchanged sync
-- asks nothing again.

-- Domains that matched no CRM record, or several, with the desired values they had then:
-- looked up again after `recheck_unmatched_hours` or when those values change.
CREATE TABLE crm_unmatched (
    connector   TEXT    NOT NULL,
    domain      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,   -- not_found | ambiguous
    crm_ids     TEXT    NOT NULL,   -- JSON array of the matching record ids (ambiguous)
    desired     TEXT    NOT NULL,   -- JSON of the desired fields and stage at the lookup
    checked_at  INTEGER NOT NULL,
    PRIMARY KEY (connector, domain)
) WITHOUT ROWID;

-- The mapping (by fingerprint) whose fields the CRM's schema was last found to hold, so
-- the schema is described once per mapping, not once per run.
CREATE TABLE crm_schema_checks (
    connector    TEXT    PRIMARY KEY,
    fingerprint  TEXT    NOT NULL,
    checked_at   INTEGER NOT NULL
) WITHOUT ROWID;
