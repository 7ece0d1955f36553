"""One rank of the distributed tests, started by tests/e2e/test_distributed.py as `mpiexec -n N python
tests/mpi_worker.py SCENARIO OUT_DIR`. Each rank writes OUT_DIR/result-<rank>.json on success
and OUT_DIR/error-<rank>.txt for a DistributedError (files, because mpiexec interleaves the ranks'
output).

Scenarios: `train` (a few hundred steps, float64 and float32), `single` (1 rank: distributed fit
against plain fit in the same process), `batchnorm`, `raise` (rank 1 fails mid-training),
`mismatch-batch`, `mismatch-hidden`, `mismatch-samples` (one rank differs), `indivisible`
(batch 100), `exit` (rank 1 calls sys.exit before training, while rank 0 waits for it), `checkpoint`
(2 epochs saved to OUT_DIR/run, for one process to resume), `diverge` (lr 100: every rank stops),
`conv` (a SimpleConvNet on image batches, float64).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

import xbp
from xbp import distributed
from xbp.nets import MultiLayerNet, SimpleConvNet, TwoLayerNet
from xbp.optimizers import SGD, Momentum
from xbp.training import fit

STEPS_EPOCHS = 6  # 600 samples / batch 12 = 50 steps an epoch: 300 steps


def blobs(n: int = 600, features: int = 8, seed: int = 0, dtype: str = "float64"):
    """Three overlapping clusters, so that the loss keeps moving for hundreds of steps."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, size=n)
    centers = np.random.default_rng(1234).normal(0, 1.0, size=(3, features))
    return (centers[t] + rng.normal(0, 1.0, size=(n, features))).astype(dtype), t


CONV = {"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1}


def images(n: int = 96, seed: int = 4):
    """Small NCHW image batches for the `conv` scenario."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, size=(n, 1, 6, 6)), rng.integers(0, 3, size=n)


def digest(net) -> str:
    state = net.state()
    return hashlib.sha256(b"".join(np.ascontiguousarray(np.asarray(state[key])).tobytes()
                                   for key in sorted(state))).hexdigest()


def train(comm, dtype: str, out: Path, net=None, batch_size: int = 12, optimizer=None) -> dict:
    x, t = blobs(dtype=dtype)
    # each rank draws other weights: fit must broadcast rank 0's
    net = net or TwoLayerNet(8, 20, 3, weight_init_std=0.3, seed=comm.rank + 1, dtype=dtype)
    logged: list[str] = []
    history = fit(net, optimizer or SGD(lr=0.1), (x, t), epochs=STEPS_EPOCHS, batch_size=batch_size,
                  seed=3, eval=blobs(n=200, seed=9, dtype=dtype), progress=True, log=logged.append,
                  comm=comm)
    if comm.is_root:
        np.savez(out / f"params-{dtype}.npz", **{k: np.asarray(v) for k, v in net.state().items()})
    return {"rank": comm.rank, "size": comm.size, "digest": digest(net), "loss": history["loss"],
            "train_acc": history["train_acc"], "test_acc": history["test_acc"],
            "allreduce_calls": comm.allreduce_calls, "logged": logged}


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    comm = distributed.init()
    result: dict = {"rank": comm.rank}
    if scenario == "train":
        result["float64"] = train(comm, "float64", out)
        result["float32"] = train(comm, "float32", out)
    elif scenario == "single":
        x, t = blobs(dtype="float32")
        nets = [TwoLayerNet(8, 20, 3, weight_init_std=0.3, seed=1) for _ in range(2)]
        plain = fit(nets[0], Momentum(lr=0.05), (x, t), epochs=3, batch_size=12, seed=3, progress=False)
        both = fit(nets[1], Momentum(lr=0.05), (x, t), epochs=3, batch_size=12, seed=3, progress=False,
                   comm=comm)
        result.update(plain=digest(nets[0]), distributed=digest(nets[1]),
                      same_history=plain["loss"] == both["loss"] and plain["train_acc"] == both["train_acc"])
    elif scenario == "batchnorm":
        net = MultiLayerNet(8, [16, 16], 3, use_batchnorm=True, seed=comm.rank, dtype="float64")
        result.update(train(comm, "float64", out, net=net, optimizer=Momentum(lr=0.05)))
    elif scenario == "raise":
        class Failing(SGD):
            calls = 0

            def update(self, params, grads):
                self.calls += 1
                if comm.rank == 1 and self.calls == 20:
                    (out / "raised").write_text(repr(time.time()))
                    raise RuntimeError("rank 1 fails on purpose")
                super().update(params, grads)

        train(comm, "float32", out, optimizer=Failing(lr=0.1))
    elif scenario.startswith("mismatch-"):
        what = scenario.split("-", 1)[1]
        odd = comm.rank == 1
        x, t = blobs(n=500 if odd and what == "samples" else 600, dtype="float32")
        net = TwoLayerNet(8, 30 if odd and what == "hidden" else 20, 3, seed=1)
        fit(net, SGD(lr=0.1), (x, t), epochs=1, batch_size=6 if odd and what == "batch" else 12, seed=3,
            progress=False, comm=comm)
    elif scenario == "exit":
        if comm.rank == 1:
            sys.exit("error: rank 1 cannot find its data")
        x, t = blobs(dtype="float32")
        fit(TwoLayerNet(8, 20, 3, seed=1), SGD(lr=0.1), (x, t), epochs=1, batch_size=12, seed=3,
            progress=False, comm=comm)
    elif scenario == "indivisible":
        x, t = blobs(dtype="float32")
        fit(TwoLayerNet(8, 20, 3, seed=1), SGD(lr=0.1), (x, t), epochs=1, batch_size=100, seed=3,
            progress=False, comm=comm)
    elif scenario == "checkpoint":
        x, t = blobs(dtype="float32")
        net = TwoLayerNet(8, 20, 3, weight_init_std=0.3, seed=comm.rank + 1)
        history = fit(net, Momentum(lr=0.05), (x, t), epochs=2, batch_size=12, seed=3, progress=False,
                      log=None, comm=comm, checkpoint=out / "run")
        result.update(digest=digest(net), loss=history["loss"])
    elif scenario == "conv":
        x, t = images()
        net = SimpleConvNet((1, 6, 6), CONV, hidden_size=4, output_size=3, weight_init_std=0.3,
                            seed=comm.rank + 1, dtype="float64")  # fit broadcasts rank 0's weights
        history = fit(net, Momentum(lr=0.05), (x, t), epochs=2, batch_size=12, seed=3, progress=False,
                      comm=comm)
        if comm.is_root:
            np.savez(out / "params-conv.npz", **{k: np.asarray(v) for k, v in net.state().items()})
        result.update(digest=digest(net), loss=history["loss"])
    elif scenario == "diverge":
        x, t = blobs(dtype="float32")
        try:
            fit(TwoLayerNet(8, 20, 3, seed=1), SGD(lr=100.0), (x, t), epochs=3, batch_size=12, seed=3,
                progress=False, comm=comm)
        except xbp.TrainingDivergedError as error:
            result["diverged"] = str(error)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    (out / f"result-{comm.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    with distributed.abort_on_error():
        try:
            main()
        except distributed.DistributedError as error:
            rank = sys.modules["mpi4py.MPI"].COMM_WORLD.Get_rank()
            (Path(sys.argv[2]) / f"error-{rank}.txt").write_text(str(error))
            raise
