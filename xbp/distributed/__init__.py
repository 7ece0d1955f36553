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

from xbp.distributed.communicator import Communicator, init, launched_size
from xbp.distributed.data_parallel import DataParallel, DistributedOptimizer, allreduce_mean, broadcast_state
from xbp.distributed.failure import DistributedError, abort_on_error

__all__ = ["Communicator", "DataParallel", "DistributedError", "DistributedOptimizer", "abort_on_error",
           "allreduce_mean", "broadcast_state", "init", "launched_size"]
