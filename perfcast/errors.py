"""Errors that perfcast raises on purpose.

Every error that a user can cause (a bad file, a bad spec string, a bad option)
is a :class:`PerfcastError`; the command line turns it into one line on stderr
and exit status 2. Anything else is an internal error (exit status 1).
"""

from __future__ import annotations


class PerfcastError(Exception):
    """A problem with the user's input; ``subject`` names the input."""

    def __init__(self, subject: str, problem: str) -> None:
        self.subject = str(subject)
        self.problem = problem
        super().__init__(f"{self.subject}: {problem}")


class ModelLoadError(PerfcastError):
    """A model file or reference that cannot be read."""


class GraphError(PerfcastError):
    """A graph that is not a valid dataflow graph (cycle, dangling input...)."""


class SpecError(PerfcastError):
    """A spec string that names no network."""


class UsageError(PerfcastError):
    """An option with a bad value."""
