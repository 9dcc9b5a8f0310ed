"""Read APIs served from Redis only: profile lookups (and personalization, later)."""
