"""Contracts that cross process boundaries: Redis keys (more to move here, see issue 12)."""
