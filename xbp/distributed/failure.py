"""Failing together: one rank's error ends the whole job instead of leaving the others waiting.

`init()` makes an uncaught exception on any rank print its traceback and call `MPI_Abort`, which
ends every rank; `abort_on_error()` does the same for `sys.exit(nonzero)` around a script's main.
A `DistributedError` is raised by every rank at once, so it exits each of them normally instead.
"""

from __future__ import annotations

import array
import contextlib
import os
import stat
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

from xbp.errors import XbpError

__all__ = ["DistributedError", "abort_on_error"]


class DistributedError(XbpError, RuntimeError):
    """The ranks cannot train together; raised on every rank at once, so none is left waiting."""

    everywhere = True  # every rank raises it: exit normally instead of aborting the job


def _abort_on_uncaught_exceptions(communicator: Any) -> None:
    """An uncaught exception prints its traceback, then MPI_Abort ends every rank of the job."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        if getattr(error, "everywhere", False):  # raised by every rank: each exits on its own
            previous(kind, error, tb)
            return
        _abort(communicator.mpi, 1, "".join(traceback.format_exception(kind, error, tb)))

    sys.excepthook = hook


@contextlib.contextmanager
def abort_on_error() -> Iterator[None]:
    """Around a script's main(): `sys.exit(nonzero)` or an exception on one rank ends the whole job.

    (`sys.exit` does not reach sys.excepthook.) Outside an MPI job with more than one rank, or for
    a DistributedError that every rank raised, the exit happens as usual.
    """
    try:
        yield
    except BaseException as error:
        status = _abort_status(error)
        mpi = sys.modules.get("mpi4py.MPI")
        if status and mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized() \
                and mpi.COMM_WORLD.Get_size() > 1 and not getattr(error, "everywhere", False):
            if isinstance(error, SystemExit):
                report = f"{error.code if isinstance(error.code, str) else f'exit status {error.code}'}\n"
            else:
                report = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            _abort(mpi.COMM_WORLD, status, report)
        raise


def _abort(world: Any, status: int, report: str) -> None:
    """Print why this rank failed, then MPI_Abort: the launcher ends every rank.

    The launcher kills the job as soon as it hears of the abort, and drops whatever this rank wrote
    that it has not yet read: so the report goes out in one write, and the abort waits (2 s at most)
    until the launcher has read it. MPICH may return from Abort, so this rank exits too.
    """
    report += f"xbp.distributed: rank {world.Get_rank()} of {world.Get_size()} failed; ending the job\n"
    sys.stdout.flush()
    sys.stderr.write(report)
    sys.stderr.flush()
    for stream in (sys.stdout, sys.stderr):
        _wait_until_read(stream, limit=2.0)
    world.Abort(status)
    os._exit(status)


def _wait_until_read(stream: Any, limit: float) -> None:
    """Wait until the pipe `stream` writes to holds no unread bytes (FIONREAD on a pipe, Linux)."""
    try:
        import fcntl
        import termios

        descriptor = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(descriptor).st_mode):  # a terminal or file has nothing to drop
            return
        unread = array.array("i", [0])
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            fcntl.ioctl(descriptor, termios.FIONREAD, unread)
            if unread[0] == 0:
                return
            time.sleep(0.01)
    except (AttributeError, ImportError, OSError, ValueError):  # no descriptor, or no FIONREAD here
        return


def _abort_status(error: BaseException) -> int:
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    return 130 if isinstance(error, KeyboardInterrupt) else 1
