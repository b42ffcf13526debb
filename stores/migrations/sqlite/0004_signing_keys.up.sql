-- Token signing keys. retired_at: no longer signs; not_after: no longer in the JWKS.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_key_pem TEXT NOT NULL,
    public_jwk TEXT NOT NULL CHECK (json_valid(public_jwk)),
    created_at TEXT NOT NULL,
    retired_at TEXT,
    not_after TEXT
);
CREATE INDEX signing_keys_created_at_idx ON signing_keys (created_at);
CREATE INDEX signing_keys_not_after_idx ON signing_keys (not_after);
