-- The sync log and the console's /sync page list the newest records first
-- (ORDER BY at DESC, rowid DESC); without this index SQLite sorts the whole table,
-- 588 ms at 200,000 companies in benches/console.rs.
CREATE INDEX IF NOT EXISTS sync_records_by_time ON sync_records (at);
