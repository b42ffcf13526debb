-- The audit trail and its dead letters: append-only, enforced by triggers.
-- seq is the insertion order; id is the event id that makes writes idempotent.
-- subject_ref is a keyed hash, never a user id: no foreign key, erasure keeps the rows.

CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
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

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TABLE audit_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    error TEXT NOT NULL,
    failed_at TEXT NOT NULL
);
CREATE INDEX audit_dead_letters_event_id_idx ON audit_dead_letters (event_id);

CREATE TRIGGER audit_dead_letters_no_update BEFORE UPDATE ON audit_dead_letters
BEGIN
    SELECT RAISE(ABORT, 'audit_dead_letters is append-only');
END;

CREATE TRIGGER audit_dead_letters_no_delete BEFORE DELETE ON audit_dead_letters
BEGIN
    SELECT RAISE(ABORT, 'audit_dead_letters is append-only');
END;
