"""Errors a user can act on.

Every problem with user input (a file, a manifest line, a model name, an option) raises
`InputError` with one line that names the thing and the problem. The CLI prints that line
and exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message is one line naming the file/option and the problem."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line
