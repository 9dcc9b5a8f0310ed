"""State kept outside Kafka: the identity graph in Redis."""
