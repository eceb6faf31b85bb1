-- Integer ids, for the two costs that dominate at ten million activities.
--
-- Companies get an integer id, and every attributed activity carries its company's id
-- beside the domain: the full rescore files each row under its company by that number
-- (an array index) instead of hashing the domain, and the company index holds 8-byte
-- keys, which makes rebuilding it after a bulk load about half the work.
--
-- Activities become a rowid table in arrival order, with `(source, id)` unique in an
-- index of its own: a new row is appended at the end of the table instead of being
-- inserted among the existing ones by its key, and the full rescore splits the table
-- into rowid ranges, one per core, each read once.
--
-- The copy keeps the old key order: no sort of the whole table on a large store.

CREATE TABLE companies_v6 (
    id               INTEGER PRIMARY KEY,
    domain           TEXT    NOT NULL UNIQUE,
    name             TEXT,
    created_at       INTEGER NOT NULL,
    changed_version  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO companies_v6 (domain, name, created_at, changed_version)
    SELECT domain, name, created_at, changed_version FROM companies ORDER BY domain;
DROP TABLE companies;
ALTER TABLE companies_v6 RENAME TO companies;
CREATE INDEX companies_by_change ON companies (changed_version);

CREATE TABLE activities_v6 (
    seq            INTEGER PRIMARY KEY,
    source         TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    action         TEXT,
    occurred_at    INTEGER NOT NULL,
    tier           TEXT,
    source_domain  TEXT,
    company_domain TEXT,
    -- companies.id of company_domain; NULL exactly when company_domain is
    company_id     INTEGER,
    attributed_by  TEXT,
    company_name   TEXT,
    actor          TEXT,
    email_domain   TEXT,
    package        TEXT,
    version        TEXT,
    url            TEXT,
    properties     TEXT,
    imported_at    INTEGER NOT NULL
);
INSERT INTO activities_v6 (source, id, kind, action, occurred_at, tier, source_domain, company_domain, company_id,
                           attributed_by, company_name, actor, email_domain, package, version, url, properties, imported_at)
    SELECT a.source, a.id, a.kind, a.action, a.occurred_at, a.tier, a.source_domain, a.company_domain, c.id,
           a.attributed_by, a.company_name, a.actor, a.email_domain, a.package, a.version, a.url, a.properties, a.imported_at
    FROM activities a LEFT JOIN companies c ON c.domain = a.company_domain;
DROP TABLE activities;
ALTER TABLE activities_v6 RENAME TO activities;

CREATE UNIQUE INDEX activities_key ON activities (source, id);
CREATE INDEX activities_by_company ON activities (company_id) WHERE company_id IS NOT NULL;
CREATE INDEX activities_by_identity ON activities (actor, email_domain) WHERE source_domain IS NULL;
