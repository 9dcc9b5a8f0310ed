"""Kafka plumbing shared by sources and workers: topics and an awaitable producer."""
