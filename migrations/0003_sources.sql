-- Where each source stands: cursors committed with the activities they cover.

CREATE TABLE source_cursors (
    connector   TEXT    NOT NULL,
    key         TEXT    NOT NULL,   -- e.g. `owner/repo:stars`
    value       TEXT    NOT NULL,   -- JSON: page, etag, since, …
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (connector, key)
) WITHOUT ROWID;

-- GitHub profiles, fetched once and revalidated with their ETag; attribution rule 4.
CREATE TABLE github_profiles (
    login         TEXT PRIMARY KEY,
    etag          TEXT,
    email_domain  TEXT,
    blog_domain   TEXT,
    company       TEXT,
    fetched_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Files an export connector imported: a file is imported again only when it changed.
CREATE TABLE export_files (
    connector    TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    imported_at  INTEGER NOT NULL,
    PRIMARY KEY (connector, path)
) WITHOUT ROWID;
