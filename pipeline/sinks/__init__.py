"""Where results leave: Redis, ClickHouse and the raw archive."""
