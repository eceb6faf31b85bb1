-- The console's history: how many companies were in each stage on each day, and the
-- stage moves of the last week. Written by every full rescore (the daily one at 00:05
-- UTC, `score`, a daemon's start): the as-of day's counts replace what was there, the
-- days before it are back-filled from the stage timelines when the table lacks them,
-- and a day once recorded keeps what that day's rescore saw.
CREATE TABLE stage_history (
    day        TEXT    NOT NULL,   -- YYYY-MM-DD
    stage      TEXT    NOT NULL,
    companies  INTEGER NOT NULL,
    PRIMARY KEY (day, stage)
) WITHOUT ROWID;

-- Stage changes of the 7 days up to the last full rescore's as-of date; replaced whole
-- by each. `from_stage` is NULL on a company's first day (a new lead).
CREATE TABLE stage_moves (
    day         TEXT NOT NULL,
    domain      TEXT NOT NULL,
    from_stage  TEXT,
    to_stage    TEXT NOT NULL,
    PRIMARY KEY (domain, day)
) WITHOUT ROWID;
