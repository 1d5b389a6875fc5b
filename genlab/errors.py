"""The errors a user can cause and fix, and only those: the CLI prints them in one line.

Anything else that escapes a command is a bug in genlab (or in a library it calls) and keeps
its traceback. Every error class that means "your input is wrong" derives from ``UserError``:
``InputError`` for a bad value (an option, a label, a file's content), ``UnknownName`` for a
name that no registry holds, and the package's own ConfigError, DatasetError,
CheckpointError, RunError, TrainingDiverged. ``genlab --traceback`` (or ``GENLAB_DEBUG=1``)
shows the traceback of user errors too.

This module imports nothing from genlab, so every layer can raise these.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix from the message alone: printed in one line, without a traceback."""


class InputError(UserError, ValueError):
    """A value given by the user is not acceptable (a ValueError, so ``except ValueError`` still catches it)."""


class UnknownName(UserError, KeyError):
    """A name that is not in a registry (a KeyError); prints its message, not the repr a KeyError prints."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# Missing or already existing files named by the user are theirs to fix as well.
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError)
