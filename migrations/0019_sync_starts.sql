-- The as-of day (days since 1970-01-01) each sink first synced. With `first_sync:
-- baseline`, a company already in its stage by that day records it on its first sync
-- without firing triggers; one that entered its stage later fires, as a change.
CREATE TABLE sync_starts (
    connector TEXT    PRIMARY KEY,
    day       INTEGER NOT NULL
) WITHOUT ROWID;

-- Sinks that synced before this table existed started no later than their oldest
-- accepted record.
INSERT INTO sync_starts (connector, day)
    SELECT connector, MIN(accepted_at) / 86400000000000 FROM crm_state GROUP BY connector;
