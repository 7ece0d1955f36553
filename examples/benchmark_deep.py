"""Seconds per training epoch of a deep MultiLayerNet (5 hidden layers of 100 by default).

Each variant (plain, with batch normalization, with dropout, with both) trains its own net from the
same initial weights on the same batches: SGD, float32, batches drawn from a host permutation and
gathered on the device, the loss summed on the device and read back once per epoch (which also
waits for a GPU to finish). The variants take turns epoch by epoch, so drift in the machine hits
them alike. Reported: the median seconds per epoch, samples per second, the last epoch's mean loss
and the test accuracy after training, with the load average before and after (other processes on
a small machine skew CPU timings; a BLAS that spins several threads suffers most, so compare runs
with OPENBLAS_NUM_THREADS=1 as well).

    python examples/benchmark_deep.py                       # plain, numpy, 3 epochs
    python examples/benchmark_deep.py --all --epochs 3      # plain, batchnorm, dropout 0.2, both
    python examples/benchmark_deep.py --batchnorm --dropout 0.2 --backend cupy
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

import xbp
from xbp.backend import device_name
from xbp.nets import MultiLayerNet
from xbp.optimizers import SGD


def train_epoch(net: MultiLayerNet, optimizer: SGD, x: Any, t: Any, order: np.ndarray) -> tuple[float, float]:
    """One epoch over the batches in `order` (steps x batch); returns (seconds, mean loss)."""
    xp = xbp.array_namespace(x, t)
    batches = xbp.to_device(order, xbp.device(x))
    total = xp.zeros((), dtype=x.dtype, device=xbp.device(x))
    start = time.perf_counter()
    for step in range(order.shape[0]):
        index = batches[step, ...]
        grads = net.gradient(xp.take(x, index, axis=0), xp.take(t, index, axis=0))
        optimizer.update(net.params, grads)
        total = total + net.last_layer.loss
    loss = float(total) / order.shape[0]  # the one read-back, after every step has run
    return time.perf_counter() - start, loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="100,100,100,100,100", help="hidden sizes (default 5x100)")
    parser.add_argument("--batchnorm", action="store_true", help="with BatchNormalization")
    parser.add_argument("--dropout", type=float, default=0.0, metavar="RATIO", help="with Dropout(RATIO)")
    parser.add_argument("--all", action="store_true", help="plain, --batchnorm, --dropout 0.2, and both")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (default 3)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", help="array backend (default: XBP_BACKEND or numpy)")
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    args = parser.parse_args(argv)
    if args.backend:
        xbp.set_backend(args.backend)

    from xbp.datasets import load_mnist

    hidden = [int(size) for size in args.layers.split(",")]
    if args.all:
        variants = [(False, 0.0), (True, 0.0), (False, 0.2), (True, 0.2)]
    else:
        variants = [(args.batchnorm, args.dropout)]

    (x_np, t_np), (x_test_np, t_test_np) = load_mnist(dataset=args.dataset)
    x, t = xbp.asarray(x_np), xbp.asarray(t_np)
    x_test, t_test = xbp.asarray(x_test_np), xbp.asarray(t_test_np)
    n = x.shape[0]
    steps = n // args.batch_size

    nets, optimizers, times, losses = {}, {}, {}, {}
    for batchnorm, dropout in variants:
        name = "plain" if not (batchnorm or dropout) else " + ".join(
            (["batchnorm"] if batchnorm else []) + ([f"dropout {dropout:g}"] if dropout else []))
        nets[name] = MultiLayerNet(784, hidden, 10, use_batchnorm=batchnorm, use_dropout=dropout > 0,
                                   dropout_ratio=dropout or 0.5, seed=args.seed)
        optimizers[name], times[name], losses[name] = SGD(lr=args.lr), [], []

    print(f"xbp {xbp.__version__} on {xbp.get_backend()}: {device_name()}")
    print(f"numpy {np.__version__}, python {platform.python_version()}, {args.dataset} train "
          f"({n} samples), batch {args.batch_size}, SGD lr {args.lr:g}, float32, {args.epochs} epochs each")
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    print(f"BLAS threads: {threads or 'library default'}; load average before: {_load()}")
    rng = np.random.default_rng(args.seed)
    for _ in range(args.epochs):
        order = rng.permutation(n)[: steps * args.batch_size].reshape(steps, args.batch_size)
        for name in nets:
            seconds, loss = train_epoch(nets[name], optimizers[name], x, t, order)
            times[name].append(seconds)
            losses[name].append(loss)

    label = f"{len(hidden)}x{hidden[0]}" if len(set(hidden)) == 1 else "-".join(map(str, hidden))
    print()
    print("| net | variant | s/epoch (median) | samples/s | loss (last epoch) | test acc | epochs (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, net in nets.items():
        median = statistics.median(times[name])
        each = ", ".join(f"{s:.2f}" for s in times[name])
        print(f"| MultiLayerNet {label} | {name} | {median:.2f} | {steps * args.batch_size / median:,.0f} | "
              f"{losses[name][-1]:.4f} | {net.accuracy(x_test, t_test):.4f} | {each} |")
    print(f"\nload average after: {_load()}")
    return 0


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


if __name__ == "__main__":
    sys.exit(main())
