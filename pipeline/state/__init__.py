"""Persistence and state: the SQLite store, the ledger (the only writer of job and video
status), the status enums, the typed events and the stored-record schema."""
