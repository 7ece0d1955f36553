"""The errors xbp raises, each with a message that says what was wrong and how to fix it."""

from __future__ import annotations


class XbpError(Exception):
    """Base class of every error xbp raises on purpose."""


class BackendError(XbpError, RuntimeError):
    """An array backend is unknown, or known but cannot be loaded here.

    `reason` says what is wrong in a clause, without the fix the message goes on to give (the whole
    message where it has no separate fix), e.g. "cupy is not installed (No module named 'cupy')".
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


class DeviceMismatchError(XbpError, ValueError):
    """Arrays of different libraries or devices were given to one layer or function."""


class DatasetError(XbpError, ValueError):
    """A data set file is missing, corrupted, or cannot be downloaded."""


class CheckpointError(XbpError, ValueError):
    """A parameter file is truncated, foreign, or does not fit the net it is loaded into."""


class DownloadError(DatasetError):
    """No mirror served a verified copy of a data set file (offline, or every mirror failed).

    `failures` holds (url, reason) for each URL tried.
    """

    def __init__(self, message: str, failures: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


class TrainingDivergedError(XbpError, FloatingPointError):
    """An epoch's mean loss was NaN or infinite; `history` holds the epochs before it."""

    def __init__(self, message: str, *, epoch: int, loss: float, history: dict[str, list[float]],
                 checkpoint: str | None) -> None:
        super().__init__(message)
        self.epoch, self.loss, self.history, self.checkpoint = epoch, loss, history, checkpoint


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped `fit` after a whole step, and a checkpoint was saved to resume from."""

    def __init__(self, message: str, *, epoch: int, step: int, history: dict[str, list[float]],
                 checkpoint: str) -> None:
        super().__init__(message)
        self.epoch, self.step, self.history, self.checkpoint = epoch, step, history, checkpoint
