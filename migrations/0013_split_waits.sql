-- Rate-limit waits counted apart: those the API imposed (429, Retry-After, secondary
-- limits) and those of the connector's own pacing. `rate_limit_waits` stays their sum
-- (older runs have only that).
ALTER TABLE sync_runs ADD COLUMN server_waits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN pacing_waits INTEGER NOT NULL DEFAULT 0;
