-- Slack threads followed for new replies. Replies never move their parent up a
-- channel's history: only the parent's `latest_reply` tells that a thread moved, so
-- each thread keeps what its parent last announced and how far its replies were read.
-- `read_to` moves in the transaction that stores the replies it covers.
-- Timestamps are Slack's `ts` text (`1700000000.123456`, ten digits before the point
-- until 2286): compared as text, they order as time does.

CREATE TABLE slack_threads (
    connector     TEXT NOT NULL,
    channel       TEXT NOT NULL,
    thread_ts     TEXT NOT NULL,   -- the parent's ts
    latest_reply  TEXT NOT NULL,   -- the newest reply the parent announced, as last seen
    read_to       TEXT NOT NULL,   -- the newest reply stored (thread_ts before any)
    PRIMARY KEY (connector, channel, thread_ts)
) WITHOUT ROWID;
