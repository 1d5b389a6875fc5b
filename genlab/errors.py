"""The errors a user can cause and fix: the CLI prints them in one line instead of a traceback."""

from __future__ import annotations

from genlab.config import ConfigError
from genlab.data.errors import DatasetError
from genlab.train.checkpoint import CheckpointError
from genlab.train.loop import TrainingDiverged
from genlab.train.run import RunError

USER_ERRORS = (ConfigError, DatasetError, CheckpointError, TrainingDiverged, RunError, FileExistsError,
               FileNotFoundError, KeyError, ValueError)
