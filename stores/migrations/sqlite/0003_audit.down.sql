-- Dropping a table drops its triggers; DROP is not an UPDATE or DELETE.
DROP TABLE audit_dead_letters;
DROP TABLE audit_events;
