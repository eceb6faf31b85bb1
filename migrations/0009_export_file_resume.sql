-- Watched export files resume where their last complete line ended. `size` and
-- `sha256` now cover the bytes imported (up to the end of the last complete line or
-- row, or the whole file when it cannot be resumed), `lines` counts them, `resumable`
-- says whether a grown file is read from `size` on (plain NDJSON and CSV) or whole
-- (gzip, UTF-16). `seen_size` and `seen_mtime` (nanoseconds) are the file's size and
-- modification time when it was last read complete: a file showing both again is not
-- read, not even to hash it. Rows written before keep their meaning: not resumable,
-- the whole file hashed.
ALTER TABLE export_files ADD COLUMN lines INTEGER NOT NULL DEFAULT 0;
ALTER TABLE export_files ADD COLUMN resumable INTEGER NOT NULL DEFAULT 0;
ALTER TABLE export_files ADD COLUMN seen_size INTEGER;
ALTER TABLE export_files ADD COLUMN seen_mtime INTEGER;
