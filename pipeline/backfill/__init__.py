"""Backfill and replay: rebuild profiles and aggregates from the raw archive with Apache Beam."""
