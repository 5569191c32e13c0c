-- Static tokens may expire (seconds since the epoch; NULL: never), and
-- carry the time of their last successful use as the servers report it.
ALTER TABLE tokens ADD COLUMN expires_at bigint;
ALTER TABLE tokens ADD COLUMN last_used_at bigint;
