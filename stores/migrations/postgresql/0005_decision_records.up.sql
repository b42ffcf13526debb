-- Decision records: the exact input of each decision and what it answered, for replay
-- against a candidate policy set (docs/impact.md). Written in the same transaction as
-- the decision's audit event, but not part of the audit chain: rows may be deleted
-- (retention, a subject's erasure). subject_ref is the audit trail's keyed hash.
-- body: {"facts", "context", "conditions", "hashed", "declared", "fields", "shadow"}.

CREATE TABLE decision_records (
    decision_id TEXT PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL,
    purpose TEXT NOT NULL,
    subject_ref TEXT,
    policy_revision TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    shadow TEXT,
    body JSONB NOT NULL
);
CREATE INDEX decision_records_recorded_at_idx ON decision_records (recorded_at);
CREATE INDEX decision_records_purpose_idx ON decision_records (purpose, recorded_at);
CREATE INDEX decision_records_subject_ref_idx ON decision_records (subject_ref);
