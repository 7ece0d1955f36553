"""Seconds per training epoch of a deep MultiLayerNet (5 hidden layers of 100 by default).

Each variant (plain, with batch normalization, with dropout, with both) trains its own net from the
same initial weights on the same batches with `xbp.training.fit`: SGD, float32, batches drawn from
a host permutation and gathered on the device, the loss summed on the device and read back once
per epoch (which also waits for a GPU to finish). The variants take turns epoch by epoch, so drift
in the machine hits them alike. Reported: the median seconds per epoch, samples per second, the
last epoch's mean loss and the test accuracy after training, with the load average before and
after (other processes on a small machine skew CPU timings; a BLAS that spins several threads
suffers most, so compare runs with OPENBLAS_NUM_THREADS=1 as well).

    python benchmarks/benchmark_deep.py                       # plain, numpy, 3 epochs
    python benchmarks/benchmark_deep.py --all --epochs 3      # plain, batchnorm, dropout 0.2, both
    python benchmarks/benchmark_deep.py --batchnorm --dropout 0.2 --backend cupy
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import numpy as np

import xbp
from xbp.backend import device_name
from xbp.nets import MultiLayerNet
from xbp.optimizers import SGD
from xbp.training import fit


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
    for epoch in range(args.epochs):
        for name in nets:  # the same batches for every variant: fit draws them from the seed
            history = fit(nets[name], optimizers[name], (x, t), epochs=1, batch_size=args.batch_size,
                          seed=args.seed + epoch, progress=False)
            times[name].append(history["seconds"][0])  # fit's clock: the steps, not the evaluation
            losses[name].append(history["loss"][0])

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
