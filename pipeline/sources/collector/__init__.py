"""The HTTP collector: Segment-compatible tracking API plus channel endpoints."""
