-- stamps schema, version 1. Ids of merchants and users are numeric(20, 0):
-- they range over 1 ..= 2^64 - 2, beyond bigint.
CREATE TABLE merchants (
    id numeric(20, 0) PRIMARY KEY CHECK (id >= 1),
    name text NOT NULL,
    active boolean NOT NULL,
    created_at bigint NOT NULL
);
CREATE TABLE users (
    id numeric(20, 0) PRIMARY KEY CHECK (id >= 1),
    name text NOT NULL,
    active boolean NOT NULL,
    created_at bigint NOT NULL
);
-- A static token: never its secret, only its argon2id hash (PHC string).
CREATE TABLE tokens (
    id text PRIMARY KEY,
    user_id numeric(20, 0) NOT NULL REFERENCES users (id),
    merchant_id numeric(20, 0) NOT NULL REFERENCES merchants (id),
    label text,
    hash text NOT NULL,
    created_at bigint NOT NULL,
    revoked boolean NOT NULL
);
CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE INDEX tokens_by_merchant ON tokens (merchant_id);
-- One row per revoked jti, user or merchant (j:<jti>, u:<id>, m:<id>).
CREATE TABLE jwt_revocations (
    target text PRIMARY KEY,
    revoked_at bigint NOT NULL,
    record text NOT NULL
);
-- Signing keys made by rotation; record holds the secret (as sled does).
CREATE TABLE signing_keys (
    id bigint PRIMARY KEY,
    created_at bigint NOT NULL,
    record text NOT NULL
);
CREATE TABLE audit (
    seq bigserial PRIMARY KEY,
    at bigint NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL
);
CREATE INDEX audit_by_time ON audit (at);
-- What every replica follows: written in the transaction of each change,
-- under an advisory lock, so sequence numbers commit in order.
CREATE TABLE change_log (
    seq bigserial PRIMARY KEY,
    at bigint NOT NULL,
    change text NOT NULL
);
CREATE TABLE meta (
    key text PRIMARY KEY,
    value bigint NOT NULL
);
