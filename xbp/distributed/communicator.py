"""The communicator: one process's view of an MPI job (rank, size, its node), and sums over the ranks.

`init()` joins the job, and with more than one rank also makes one rank's error end the job, limits
BLAS threads to cores / ranks on the node, and with CuPy selects GPU `local_rank`. Nothing here
imports mpi4py until `init()` (or a Communicator) is made.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Any

import numpy as np

from xbp import backend
from xbp.distributed.failure import DistributedError, _abort_on_uncaught_exceptions
from xbp.distributed.nccl import _Nccl, _nccl_problem

__all__ = ["Communicator", "init", "launched_size"]

_INSTALL = 'pip install "xbp[mpi]" (mpi4py and an MPI from PyPI)'
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")  # MPICH, Open MPI, MVAPICH


class Communicator:
    """One process's view of the job: `rank` of `size`, `local_rank` of `local_size` on its node.

    Wraps an mpi4py communicator (`mpi`). `allreduce_sum` sums an array over the ranks in place
    where it can; `allreduce_seconds` and `allreduce_calls` count what it cost.
    """

    def __init__(self, mpi: Any) -> None:
        self.mpi = mpi
        self.rank: int = mpi.Get_rank()
        self.size: int = mpi.Get_size()
        local = mpi.Split_type(_mpi().COMM_TYPE_SHARED, key=self.rank)  # the ranks on this node
        self.local_rank: int = local.Get_rank()
        self.local_size: int = local.Get_size()
        local.Free()
        self.allreduce_seconds = 0.0
        self.allreduce_calls = 0
        self._nccl: Any = None  # made on the first CuPy buffer, by every rank at once
        self._nccl_reason = ""
        self._told: set[str] = set()

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that logs, saves and plots."""
        return self.rank == 0

    def __repr__(self) -> str:
        return (f"Communicator(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, "
                f"local_size={self.local_size})")

    def allreduce_sum(self, buffer: Any) -> Any:
        """sum over ranks of `buffer` (a contiguous 1-d array), on every rank; in place for numpy and NCCL."""
        start = time.perf_counter()
        library = backend.library_of(buffer)
        if self.size == 1:
            result = buffer
        elif library == "numpy":
            self.mpi.Allreduce(_mpi().IN_PLACE, buffer, op=_mpi().SUM)
            result = buffer
        elif library == "cupy" and self._nccl_ready():
            result = self._nccl.allreduce_sum(buffer)
        else:
            result = self._host_staged(buffer, library)
        self.allreduce_seconds += time.perf_counter() - start
        self.allreduce_calls += 1
        return result

    def sum(self, value: float) -> float:
        """sum over ranks of a Python number (once per epoch: pickled, which is fine for one number)."""
        return value if self.size == 1 else self.mpi.allreduce(value, op=_mpi().SUM)

    def raise_together(self, problem: str | None) -> None:
        """Raise DistributedError on every rank if any rank has a problem (None: this rank has none)."""
        problems = [problem] if self.size == 1 else self.mpi.allgather(problem)
        found = [(rank, text) for rank, text in enumerate(problems) if text]
        if not found:
            return
        if len({text for _, text in found}) == 1 and len(found) == self.size:
            raise DistributedError(found[0][1])
        raise DistributedError("; ".join(f"rank {rank}: {text}" for rank, text in found))

    def agree(self, facts: dict[str, Any], fix: str) -> None:
        """Raise DistributedError on every rank unless every rank has the same `facts`."""
        everyone = [facts] if self.size == 1 else self.mpi.allgather(facts)
        differ = [key for key in facts if any(other.get(key) != facts[key] for other in everyone)]
        differ += [key for other in everyone for key in other if key not in facts]
        if differ:
            lines = [f"{key}: " + ", ".join(f"rank {rank} has {other.get(key)!r}"
                                            for rank, other in enumerate(everyone))
                     for key in dict.fromkeys(differ)]
            raise DistributedError("the ranks disagree, so none of them started: "
                                   + "; ".join(lines) + f". {fix}")

    def tell(self, notice: str) -> None:
        """Print a one-line notice on rank 0, once."""
        if self.is_root and notice not in self._told:
            self._told.add(notice)
            print(f"xbp.distributed: {notice}", file=sys.stderr, flush=True)

    def _host_staged(self, buffer: Any, library: str) -> Any:
        """Sum through MPI on the host: copy to numpy, Allreduce, copy back to the buffer's device."""
        if library == "cupy":
            self.tell(f"NCCL is not available ({self._nccl_reason}); gradients are summed through MPI "
                      "on the host, a copy each way every step. For NCCL: pip install nvidia-nccl-cu12 "
                      "(or -cu13, matching CuPy).")
        else:
            self.tell(f"{library} arrays are summed through MPI on the host, a copy each way every step.")
        host = np.ascontiguousarray(backend.to_cpu(buffer))
        self.mpi.Allreduce(_mpi().IN_PLACE, host, op=_mpi().SUM)
        return backend.to_device(host, backend.device(buffer))

    def _nccl_ready(self) -> bool:
        """Make the NCCL communicator on first use, if every rank can load NCCL (else no rank uses it)."""
        if self._nccl is None:
            reason = _nccl_problem()
            reasons = self.mpi.allgather(reason)
            missing = [f"rank {rank}: {text}" for rank, text in enumerate(reasons) if text]
            self._nccl_reason = "; ".join(missing) if len(set(reasons)) > 1 else (reason or "")
            self._nccl = _Nccl(self) if not missing else False
        return bool(self._nccl)


def init(comm: Any = None, *, set_threads: bool = True) -> Communicator:
    """Join the job (MPI.COMM_WORLD, or the mpi4py `comm` given) and return this rank's Communicator.

    With more than one rank it also: makes an uncaught exception on any rank abort the whole job;
    sets BLAS threads to cores / ranks on the node (unless a *_NUM_THREADS variable is set or
    `set_threads` is False); and, when the selected backend is CuPy, selects GPU `local_rank`.
    Call it before building the net, so that the parameters are made on that GPU.
    """
    MPI = _mpi()
    communicator = Communicator(MPI.COMM_WORLD if comm is None else comm)
    if communicator.size > 1:
        _abort_on_uncaught_exceptions(communicator)
        if set_threads:
            _limit_blas_threads(communicator)
    if backend.get_backend() == "cupy":
        communicator.raise_together(_use_gpu(communicator.local_rank, communicator.local_size))
    return communicator


def launched_size() -> int:
    """The number of ranks mpiexec started (from its environment), 1 when not started by mpiexec."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def _mpi() -> Any:
    try:
        return importlib.import_module("mpi4py.MPI")
    except ImportError as exc:
        raise DistributedError(f"distributed training needs mpi4py and an MPI library, which cannot "
                               f"load here ({exc}). Fix: {_INSTALL}.") from exc


def _limit_blas_threads(communicator: Communicator) -> None:
    """BLAS threads = cores / ranks on this node, unless the user chose a number."""
    if any(os.environ.get(name) for name in _THREAD_VARIABLES):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // communicator.local_size)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        communicator.tell(f"threadpoolctl is missing, so each of the {communicator.local_size} ranks on "
                          f"a node may start one BLAS thread per core; set OPENBLAS_NUM_THREADS="
                          f"{threads} or {_INSTALL}.")
        return
    threadpool_limits(limits=threads, user_api="blas")


def _use_gpu(local_rank: int, local_size: int) -> str | None:
    """Select GPU `local_rank` for this rank (CuPy); a problem as text, or None."""
    cupy = importlib.import_module("cupy")
    count = cupy.cuda.runtime.getDeviceCount()
    if local_size > count:
        return (f"{local_size} ranks share a node with {count} GPU(s): start at most {count} ranks per "
                "node (one GPU each), or train on the CPU with XBP_BACKEND=numpy.")
    # New arrays go to this GPU (backend selector), and kernels and NCCL run on it (current device:
    # ncclCommInitRank uses the device that is current when it is called, per the NCCL API docs,
    # docs.nvidia.com/deeplearning/nccl/user-guide/docs/api/comms.html, ncclCommInitRank).
    backend.set_backend("cupy", device=local_rank)
    cupy.cuda.Device(local_rank).use()
    return None
