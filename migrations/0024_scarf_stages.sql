-- Scarf's own funnel stage of each company, from its company rollup (the API's, or a
-- scheduled export's file), kept beside ours for the `scarf_stage` signals. Never an
-- input to scoring: Scarf's rules are its own.
CREATE TABLE scarf_stages (
    connector TEXT NOT NULL,
    domain TEXT NOT NULL,
    -- Our spelling when it is one of our stages (`ongoing_usage`), else Scarf's as is.
    stage TEXT NOT NULL,
    -- YYYY-MM-DD: when Scarf says the company entered the stage, when it says so.
    since TEXT,
    -- When the rollup holding it was read (nanoseconds): the latest read wins.
    read_at INTEGER NOT NULL,
    PRIMARY KEY (connector, domain)
);
