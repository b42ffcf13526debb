DROP TABLE token_revocations;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
