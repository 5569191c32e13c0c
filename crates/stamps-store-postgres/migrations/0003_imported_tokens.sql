-- Imported tokens (CONTRACT §2) are found by the digest of their text
-- under a lookup key kept outside the database; NULL for issued tokens.
ALTER TABLE tokens ADD COLUMN lookup text UNIQUE;
