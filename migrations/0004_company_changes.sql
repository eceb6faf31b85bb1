-- The data version at which a company's activities last changed (inserted, or moved
-- by attribution): rescoring after a poll reads only companies changed since the
-- version the persisted scores were computed at.
ALTER TABLE companies ADD COLUMN changed_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX companies_by_change ON companies (changed_version);
