-- GitHub work a poll could not finish, kept so that the next poll finishes it.

-- Logins whose profile is still to be fetched: queued with the page that named them,
-- retried with backoff after a failed fetch, and after a long wait when GitHub says
-- the user does not exist (404).
CREATE TABLE github_profile_queue (
    login       TEXT    PRIMARY KEY,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL DEFAULT 0,   -- nanoseconds; due when <= now
    last_error  TEXT
) WITHOUT ROWID;

-- Issues and pull requests whose reactions are still to be read: queued in the same
-- transaction as the issues page (and cursor) that showed them, removed in the same
-- transaction as their reactions.
CREATE TABLE github_pending_reactions (
    connector   TEXT    NOT NULL,
    repo        TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    url         TEXT,
    PRIMARY KEY (connector, repo, number)
) WITHOUT ROWID;
