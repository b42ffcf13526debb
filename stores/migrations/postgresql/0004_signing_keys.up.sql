-- Token signing keys. retired_at: no longer signs; not_after: no longer in the JWKS.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_key_pem TEXT NOT NULL,
    public_jwk JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ,
    not_after TIMESTAMPTZ
);
CREATE INDEX signing_keys_created_at_idx ON signing_keys (created_at);
CREATE INDEX signing_keys_not_after_idx ON signing_keys (not_after);
