"""Data parallelism: every rank holds the whole net, trains on its share of each global batch, and
applies the gradients averaged over the ranks, so that the replicas stay bitwise identical.

    g = (1 / size) * sum over ranks of g_rank      (one packed buffer per dtype, keys in sorted order)

`DataParallel` is what `fit(..., comm=comm)` does differently, a hook of fit (`xbp.hooks`);
`broadcast_state`, `allreduce_mean` and `DistributedOptimizer` serve a loop of one's own.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from xbp import backend
from xbp.backend import array_namespace
from xbp.distributed.communicator import Communicator
from xbp.distributed.failure import DistributedError
from xbp.evaluation import evaluate
from xbp.hooks import Hook, Run

__all__ = ["DataParallel", "DistributedOptimizer", "allreduce_mean", "broadcast_state"]


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


class DataParallel(Hook):
    """What `fit(..., comm=comm)` does differently: the hook of data parallelism.

    Made before anything else, it checks on every rank that the ranks agree (arguments, data sizes,
    net, optimizer) and that the global batch splits evenly, and broadcasts rank 0's state. Then it
    makes each step's update average the gradients over the ranks, gives this rank its columns of
    each epoch's batches, and reduces the epoch's loss and accuracies over the ranks; rank 0 logs.
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
                     "backend": backend.library_of(next(iter(net.params.values())))}
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
        self.net = broadcast_state(net, self.comm)

    def start(self, run: Run) -> None:
        """The update averages over the ranks (the optimizer stays the run's), and so does the score."""
        run.update = DistributedOptimizer(run.optimizer, self.comm).update
        run.score = self.evaluate
        run.leader = self.comm.is_root

    def epoch_begins(self, epoch: int, order: np.ndarray) -> np.ndarray:
        """This rank's columns of the (steps, batch_size) batch indices every rank drew alike."""
        start = self.comm.rank * self.share_size
        return np.ascontiguousarray(order[:, start:start + self.share_size])

    def epoch_loss(self, epoch: int, loss: float) -> float:
        """The epoch's loss averaged over the ranks; buffers averaged; replicas checked identical."""
        net = self.net
        buffers = net.buffers() if hasattr(net, "buffers") else {}
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
