"""Durable state: the spool of received files and the SQLite index (instances, jobs, outbox)."""
