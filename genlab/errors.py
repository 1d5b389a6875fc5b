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

import errno
import json


class UserError(Exception):
    """An error the user can fix from the message alone: printed in one line, without a traceback."""


class InputError(UserError, ValueError):
    """A value given by the user is not acceptable (a ValueError, so ``except ValueError`` still catches it)."""


class UnknownName(UserError, KeyError):
    """A name that is not in a registry (a KeyError); prints its message, not the repr a KeyError prints."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# Missing or already existing files named by the user are theirs to fix as well, and so is a JSON file
# of a run folder that no longer parses (a hand edit, a truncated copy).
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, json.JSONDecodeError)

# OSErrors about the user's files or machine (a read-only or missing --out, an unreadable run
# folder, a full disk): the fix is outside genlab, so they get one line. Any other OSError is a bug.
FILE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                         errno.EISDIR, errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP})


def file_error_line(err: OSError) -> str | None:
    """One line naming the path and the reason of a file-system error, or None when it is not one."""
    if err.errno not in FILE_ERRNOS:
        return None
    where = err.filename if err.filename is None or err.filename2 is None else f"{err.filename} -> {err.filename2}"
    reason = err.strerror or str(err)
    hint = {errno.EACCES: "check its permissions or choose another path",
            errno.EPERM: "check its permissions or choose another path",
            errno.EROFS: "choose a path on a writable file system",
            errno.ENOSPC: "free some space or choose another disk",
            errno.EDQUOT: "free some space or choose another disk",
            errno.ENOTDIR: "a file stands where a folder is needed; choose another path"}.get(err.errno, "")
    return f"{where}: {reason}" + (f" ({hint})" if hint else "") if where else reason
