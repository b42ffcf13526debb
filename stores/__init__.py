"""Storage protocols and their memory, SQLite and PostgreSQL implementations."""
