"""ClickHouse: schema migrations, row mapping, the batching sink and its consumer."""
