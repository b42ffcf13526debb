-- One consent record per (user, purpose): granting again renews it.
-- The unique index also serves lookups by user_id alone (its leading column).
CREATE TABLE consent_records (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    UNIQUE (user_id, purpose)
);

CREATE TABLE verifiable_credentials (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    issued_at TIMESTAMPTZ NOT NULL,
    claims JSONB NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX verifiable_credentials_user_id_idx ON verifiable_credentials (user_id);
