"""NCCL through CuPy: sums of gradient buffers GPU to GPU, for ranks that each hold one GPU."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from xbp.distributed.failure import DistributedError


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

    def __init__(self, communicator: Any) -> None:  # an xbp.distributed.Communicator
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
