"""The error a user's bad input file raises anywhere in the input pipelines."""
from __future__ import annotations


class UnreadableImageError(RuntimeError):
    """Input files could not be read or decoded; `paths` lists the culprits found, the message says why and
    what to do."""

    def __init__(self, message: str, paths: list[str]):
        super().__init__(message)
        self.paths = paths
