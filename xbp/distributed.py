"""Data-parallel training over MPI: every process (rank) holds the whole net and trains on its share.

Launched as `mpiexec -n 4 python train.py`, each rank builds the same net and loads the same data;
`fit(..., comm=init())` then gives rank r the r-th share of every global batch (all ranks draw the
same permutation from the same seed), and after each backward pass the gradients are averaged:

    g = (1 / size) * sum over ranks of g_rank      (one packed buffer, keys in sorted order)

so that every rank applies the same update and the replicas stay bitwise identical (checked after
each epoch). Rank 0's parameters are broadcast before training. On the CPU the sum is MPI's
`Allreduce` on the numpy buffer (mpi4py's buffer API, no pickling); on GPUs it is NCCL through
CuPy, each rank on GPU `local_rank`, with a host-staged MPI fallback where NCCL is missing.

What goes wrong in practice fails loudly and together: arguments, data sizes or parameter shapes that
differ between ranks, or a global batch that does not split evenly, raise `DistributedError` on
every rank before training; an exception on one rank ends the whole job (`MPI_Abort`) instead of
leaving the others waiting. BLAS threads per rank are set to cores / ranks on the node, unless
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS or BLIS_NUM_THREADS is set.

Nothing here imports mpi4py until `init()` is called. Install it with `pip install "xbp[mpi]"`.
"""

from __future__ import annotations

import array
import contextlib
import importlib
import os
import stat
import sys
import time
import traceback
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from xbp import backend
from xbp.backend import array_namespace
from xbp.errors import XbpError

__all__ = ["Communicator", "DataParallel", "DistributedError", "DistributedOptimizer", "abort_on_error",
           "allreduce_mean", "broadcast_state", "init", "launched_size"]

_INSTALL = 'pip install "xbp[mpi]" (mpi4py and an MPI from PyPI)'
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")  # MPICH, Open MPI, MVAPICH


class DistributedError(XbpError, RuntimeError):
    """The ranks cannot train together; raised on every rank at once, so none is left waiting."""

    everywhere = True  # every rank raises it: exit normally instead of aborting the job


# ---------------------------------------------------------------- the communicator

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
        library = backend._library(buffer)
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


# ---------------------------------------------------------------- failing together

def _abort_on_uncaught_exceptions(communicator: Communicator) -> None:
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


# ---------------------------------------------------------------- threads and devices

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


# ---------------------------------------------------------------- NCCL through CuPy (needs a GPU)

def _nccl_problem() -> str | None:
    """Why NCCL cannot be used by this rank, or None. Import warnings are kept, not shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # cupy/cuda/nccl.py (cupy/cupy 6b6d956, lines 12-19): when the NCCL library cannot be
            # loaded the module still imports, sets available = False and warns how to install it.
            nccl = importlib.import_module("cupy.cuda.nccl")
        except ImportError as exc:
            return f"cupy.cuda.nccl cannot be imported: {exc}"
    if not getattr(nccl, "available", False):
        said = " ".join(str(caught[0].message).split()) if caught else "the NCCL library cannot be loaded"
        return said[:160]
    return None


class _Nccl:
    """An NCCL communicator over the same ranks, for sums of CuPy buffers on the current GPU.

    Written from CuPy's sources (cupy/cupy at 6b6d956), untested here (no GPU):
    - cupy_backends/cuda/libs/nccl.pyx lines 159-169: get_unique_id() returns the id as bytes
      (CuPy >= 14; a tuple of ints in 13.x, v13.6.0 lines 149-156); either pickles through MPI.
    - same file lines 323-346: NcclCommunicator(ndev, commId, rank) calls ncclCommInitRank(Config).
    - same file lines 470-477: allReduce(sendbuf, recvbuf, count, datatype, op, stream) takes raw
      pointers and a stream pointer; sendbuf == recvbuf is in place (NCCL docs, "In-place Operations").
    - cupyx/distributed/_nccl_comm.py lines 86-97: the same set-up (rank 0's id broadcast with
      mpi4py's bcast), lines 116-119 and 318-319: array.data.ptr and the current stream's ptr.
    - cupy_backends/cuda/libs/nccl.pxd: NCCL_SUM = 0, NCCL_FLOAT32 = 7, NCCL_FLOAT64 = 8.
    """

    def __init__(self, communicator: Communicator) -> None:
        self.cupy = importlib.import_module("cupy")
        self.nccl = importlib.import_module("cupy.cuda.nccl")
        unique_id = self.nccl.get_unique_id() if communicator.is_root else None
        unique_id = communicator.mpi.bcast(unique_id, root=0)
        self.comm = self.nccl.NcclCommunicator(communicator.size, unique_id, communicator.rank)
        self.types = {"float16": self.nccl.NCCL_FLOAT16, "float32": self.nccl.NCCL_FLOAT32,
                      "float64": self.nccl.NCCL_FLOAT64}

    def allreduce_sum(self, buffer: Any) -> Any:
        kind = self.types.get(str(buffer.dtype))
        if kind is None or not buffer.flags.c_contiguous:
            raise DistributedError(f"NCCL sums contiguous float16/32/64 buffers, got {buffer.dtype}.")
        stream = self.cupy.cuda.get_current_stream().ptr  # ordered with the kernels around it
        self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, kind, self.nccl.NCCL_SUM,
                            stream)
        return buffer


# ---------------------------------------------------------------- parameters and gradients

def broadcast_state(net: Any, comm: Communicator) -> Any:
    """Give every rank rank 0's parameters and buffers (net.state()); returns the net.

    Checks first, on every rank, that all ranks have the same parameter names, shapes and dtypes.
    """
    state = net.state()
    keys = sorted(state)
    comm.agree({"parameters": [(key, tuple(state[key].shape), str(state[key].dtype)) for key in keys]},
               "Build the same net (the same sizes and options) on every rank.")
    if comm.size == 1:
        return net
    received = {}
    for key in keys:
        host = np.ascontiguousarray(backend.to_cpu(state[key]))
        comm.mpi.Bcast(host, root=0)
        received[key] = host
    if not comm.is_root:
        net.set_params(received)
    return net


def allreduce_mean(grads: dict[str, Any], comm: Communicator) -> dict[str, Any]:
    """The mean over ranks of each array in `grads`: g = sum(g_rank) / size, one buffer per dtype.

    The arrays are packed in sorted key order into one 1-d buffer, summed over the ranks, divided
    by the number of ranks, and returned as views of that buffer with the original shapes.
    """
    if comm.size == 1:
        return grads
    groups: dict[str, list[str]] = {}
    for key in sorted(grads):
        groups.setdefault(str(grads[key].dtype), []).append(key)
    mean: dict[str, Any] = {}
    for keys in groups.values():
        xp = array_namespace(*(grads[key] for key in keys))
        buffer = xp.concat([xp.reshape(grads[key], (-1,)) for key in keys])
        buffer = comm.allreduce_sum(buffer) / comm.size
        offset = 0
        for key in keys:
            shape = tuple(grads[key].shape)
            count = int(np.prod(shape, dtype=np.int64))
            mean[key] = xp.reshape(buffer[offset:offset + count], shape)
            offset += count
    return {key: mean[key] for key in grads}


class DistributedOptimizer:
    """Wraps an optimizer: `update(params, grads)` averages grads over the ranks, then updates."""

    def __init__(self, optimizer: Any, comm: Communicator) -> None:
        self.optimizer = optimizer
        self.comm = comm

    def update(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        self.optimizer.update(params, allreduce_mean(grads, self.comm))

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state (every rank holds the same), for checkpoints."""
        return dict(self.optimizer.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


# ---------------------------------------------------------------- the hook fit calls

class DataParallel:
    """What `fit(..., comm=comm)` does differently, made once before training.

    Checks on every rank that the ranks agree (arguments, data sizes, net, optimizer) and that the
    global batch splits evenly, broadcasts rank 0's state, and then gives fit this rank's columns
    of each epoch's batches (`share`), the averaging optimizer (`optimizer`), the epoch's loss and
    accuracies reduced over the ranks (`end_epoch`, `evaluate`).
    """

    def __init__(self, comm: Any, net: Any, optimizer: Any, train: tuple[Any, Any],
                 eval: tuple[Any, Any] | None, *, epochs: int, batch_size: int, seed: int | None) -> None:
        self.comm = comm if isinstance(comm, Communicator) else Communicator(comm)
        facts: dict[str, Any] = {}
        problem = None
        try:
            facts = {"epochs": epochs, "batch_size": batch_size, "seed": seed,
                     "train data": _describe_data(train), "eval data": _describe_data(eval),
                     "net": type(net).__name__, "optimizer": _describe_optimizer(optimizer),
                     "backend": backend._library(next(iter(net.params.values())))}
        except Exception as exc:  # a bad argument on one rank must not leave the others waiting
            problem = f"{type(exc).__name__}: {exc}"
        self.comm.raise_together(problem)
        self.comm.agree(facts, "Start every rank with the same command, data and net "
                        "(mpiexec -n N python script.py ...).")
        if seed is None and self.comm.size > 1:
            raise DistributedError("seed=None gives each rank its own batches: pass the same integer "
                                   "seed on every rank (fit(..., seed=0)).")
        if batch_size % self.comm.size:
            size = self.comm.size
            lower, upper = batch_size - batch_size % size, batch_size - batch_size % size + size
            raise DistributedError(
                f"the global batch of {batch_size} does not split evenly over {size} ranks: each rank "
                f"trains on an equal share of every batch. Choose a batch size divisible by {size} "
                f"(e.g. {lower or upper} or {upper}), or a number of ranks that divides {batch_size}.")
        self.share_size = batch_size // self.comm.size
        broadcast_state(net, self.comm)
        self.optimizer = DistributedOptimizer(optimizer, self.comm)

    @property
    def is_root(self) -> bool:
        return self.comm.is_root

    def share(self, order: np.ndarray) -> np.ndarray:
        """This rank's columns of the (steps, batch_size) batch indices every rank drew alike."""
        start = self.comm.rank * self.share_size
        return np.ascontiguousarray(order[:, start:start + self.share_size])

    def end_epoch(self, net: Any, loss: float) -> float:
        """The epoch's loss averaged over the ranks; buffers averaged; replicas checked identical."""
        buffers = net._buffers() if hasattr(net, "_buffers") else {}
        if buffers and self.comm.size > 1:  # BatchNorm running statistics: each rank saw its share
            net.set_params({**net.params, **allreduce_mean(buffers, self.comm)})
        if self.comm.size > 1:
            digest = zlib.crc32(b"".join(np.ascontiguousarray(backend.to_cpu(value)).tobytes()
                                         for _, value in sorted(net.state().items())))
            digests = self.comm.mpi.allgather(digest)
            if len(set(digests)) > 1:
                raise DistributedError(f"the replicas' parameters differ after an epoch (checksums "
                                       f"{digests}); every rank must apply the same updates.")
        return self.comm.sum(loss) / self.comm.size

    def evaluate(self, net: Any, x: Any, t: Any) -> float:
        """Accuracy on (x, t): each rank scores its slice, the counts are summed over the ranks."""
        from xbp.training import evaluate

        n = x.shape[0]
        start, stop = n * self.comm.rank // self.comm.size, n * (self.comm.rank + 1) // self.comm.size
        correct = 0
        if stop > start:
            correct = round(evaluate(net, x[start:stop, ...], t[start:stop, ...]) * (stop - start))
        return self.comm.sum(correct) / n


def _describe_data(data: tuple[Any, Any] | None) -> Any:
    """Shapes, dtypes and a checksum of the labels and a few rows: what every rank must share."""
    if data is None:
        return None
    x, t = data
    rows = min(int(x.shape[0]), 64)
    sample = np.ascontiguousarray(backend.to_cpu(x[:rows, ...])).tobytes()
    labels = np.ascontiguousarray(backend.to_cpu(t)).tobytes()
    return (tuple(x.shape), str(x.dtype), tuple(t.shape), str(t.dtype),
            f"{zlib.crc32(sample):08x}/{zlib.crc32(labels):08x}")


def _describe_optimizer(optimizer: Any) -> str:
    settings = {key: value for key, value in sorted(vars(optimizer).items())
                if isinstance(value, (int, float, str, bool)) and not key.startswith("_")}
    return f"{type(optimizer).__name__}({', '.join(f'{k}={v!r}' for k, v in settings.items())})"
