"""Reliable messaging on Kafka and PostgreSQL: inbox, transactional outbox, timers, dead letters."""
