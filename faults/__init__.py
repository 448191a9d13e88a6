"""Fault injection: the services under kills, database restarts and broker connection drops."""
