"""The one error a replay raises: a message a person can act on."""

from __future__ import annotations


class ReplayError(Exception):
    """The run cannot be replayed as asked; the message says why and what to do."""
