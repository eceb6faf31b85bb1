-- Who runs what: one process at a time runs a connector (`connector:<name>`), and one
-- daemon (`run`) serves a store. A holder renews its lease while it runs; a lease past
-- its expiry, or held by a process of this host that is gone, is free.
CREATE TABLE leases (
    name         TEXT    PRIMARY KEY,
    holder       TEXT    NOT NULL,   -- random token of one acquisition
    pid          INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    acquired_at  INTEGER NOT NULL,   -- nanoseconds since the epoch
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
