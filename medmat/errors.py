"""User-facing errors.

Every problem caused by the user's input (a missing or corrupt file, a wrong shape, NaN, values
out of range, a pickle that carries code) is raised as :class:`MedmatError` with a one-line
message naming the file and the problem. The CLI prints that line and exits non-zero, without
a traceback; programming errors keep their traceback.
"""

from __future__ import annotations

import os


class MedmatError(Exception):
    """A user error: one line naming the file (when there is one) and the problem."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(message).split())  # one line, always
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)
