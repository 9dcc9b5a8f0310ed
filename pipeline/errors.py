"""Exceptions that tell the runtime what to do, not just what went wrong.

Terminal: the input can never succeed, dead-letter it and move on.
Transient: the world is temporarily broken (broker down), retry or answer 503.
"""

from __future__ import annotations


class TerminalError(Exception):
    """Input that will never be valid; goes to the dead-letter topic with the reason."""

    error_type = "invalid"

    def __init__(self, reason: str, error_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if error_type:
            self.error_type = error_type


class InvalidEvent(TerminalError):
    error_type = "schema"


class TransientError(Exception):
    """A dependency is unavailable; nothing was stored, the caller may retry."""
