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
            # without the NCCL library the module imports, says available = False and warns how to
            # install it (docs/notes/cuda.md, "NCCL")
            nccl = importlib.import_module("cupy.cuda.nccl")
        except ImportError as exc:
            return f"cupy.cuda.nccl cannot be imported: {exc}"
    if not getattr(nccl, "available", False):
        said = " ".join(str(caught[0].message).split()) if caught else "the NCCL library cannot be loaded"
        return said[:160]
    return None


class _Nccl:
    """An NCCL communicator over the same ranks, for sums of CuPy buffers on the current GPU.

    Rank 0's unique id is broadcast over MPI, each rank makes its NcclCommunicator, and allReduce
    sums a buffer in place on the current stream. Written from CuPy's sources, not yet run on GPUs:
    the evidence, with file and line, is in docs/notes/cuda.md ("NCCL").
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
