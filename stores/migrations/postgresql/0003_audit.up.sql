-- The audit trail and its dead letters: append-only, enforced by triggers.
-- seq is the insertion order; id is the event id that makes writes idempotent.
-- subject_ref is a keyed hash, never a user id: no foreign key, erasure keeps the rows.

CREATE TABLE audit_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    timestamp TIMESTAMPTZ NOT NULL,
    subject_ref TEXT,
    action TEXT NOT NULL,
    purpose TEXT,
    decision TEXT,
    reason TEXT,
    request_id TEXT,
    decision_id TEXT,
    policy_revision TEXT,
    stream_id TEXT,
    prev_hash TEXT,
    hash TEXT
);
CREATE INDEX audit_events_subject_ref_idx ON audit_events (subject_ref, timestamp);
CREATE INDEX audit_events_timestamp_idx ON audit_events (timestamp);
CREATE INDEX audit_events_decision_id_idx ON audit_events (decision_id);
CREATE INDEX audit_events_stream_idx ON audit_events (stream_id, seq);

CREATE TABLE audit_dead_letters (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL,
    payload JSONB NOT NULL,
    error TEXT NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_dead_letters_event_id_idx ON audit_dead_letters (event_id);

-- Statement-level, so even an UPDATE or DELETE that matches no row is refused;
-- TRUNCATE too. Only a superuser disabling the trigger can change history.
CREATE FUNCTION idgw_reject_audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION idgw_reject_audit_change();

CREATE TRIGGER audit_dead_letters_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_dead_letters
    FOR EACH STATEMENT EXECUTE FUNCTION idgw_reject_audit_change();
