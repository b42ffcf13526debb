DROP TABLE verifiable_credentials;
DROP TABLE consent_records;
