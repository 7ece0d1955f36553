"""Seconds per training epoch of xbp on each CPU backend, against xbp on numpy, in one run.

For each (batch, hidden) size, xbp's `fit` trains the book's network (784 -> hidden -> 10, ReLU,
softmax cross-entropy, SGD lr 0.1, float32) for one epoch on each backend, from the same initial
weights on the same batches; the backends take turns round after round, in a new random order each
round. Reported: the median of `fit`'s own clock (the steps of the epoch) and its ratio to numpy.
Backends that cannot load here are reported and left out.

    python benchmarks/benchmark_backends.py --rounds 3
    python benchmarks/benchmark_backends.py --backends numpy,jax.numpy --sizes 100x50
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics

import numpy as np

import xbp
from xbp.datasets import load_mnist
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD
from xbp.training import fit

BACKENDS = ["numpy", "array_api_strict", "torch", "jax.numpy"]
SIZES = [(100, 50), (1000, 1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="the first is the reference")
    parser.add_argument("--sizes", default=",".join(f"{b}x{h}" for b, h in SIZES),
                        help="batch x hidden sizes, e.g. 100x50,1000x1000")
    parser.add_argument("--rounds", type=int, default=3, help="epochs timed per backend and size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    names = []
    for name in args.backends.split(","):
        try:
            xbp.get_namespace(name)
        except xbp.BackendError as exc:
            print(f"left out: {exc}")
            continue
        names.append(name)
    if not names:
        raise SystemExit("error: no backend of --backends loads here.")
    (x_host, t_host), _ = load_mnist(dataset=args.dataset, data_dir=args.data_dir)
    versions = ", ".join(f"{name} {_version(name)}" for name in names)
    print(f"xbp {xbp.__version__}, python {platform.python_version()}, {versions}")
    print(f"{xbp.backend.device_name()}; {args.dataset} train ({len(x_host):,} samples), "
          f"{args.rounds} rounds, SGD lr 0.1, float32")
    print()
    print("| batch | hidden | backend | s/epoch (median) | samples/s | vs numpy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in args.sizes.split(","):
        batch, hidden = (int(v) for v in size.split("x"))
        runs = {}
        for name in names:
            with xbp.using_backend(name):
                net = TwoLayerNet(784, hidden, 10, seed=args.seed)
                data = (xbp.asarray(x_host), xbp.asarray(t_host))
            runs[name] = (net, SGD(lr=0.1), data)
        times: dict[str, list[float]] = {name: [] for name in names}
        shuffle = np.random.default_rng(12345)
        for round_ in range(args.rounds):
            for name in shuffle.permutation(names):
                net, optimizer, data = runs[name]
                history = fit(net, optimizer, data, epochs=1, batch_size=batch,
                              seed=args.seed + round_, progress=False)
                times[name].append(history["seconds"][0])
        reference = statistics.median(times[names[0]])
        steps = len(x_host) // batch
        for name in names:
            median = statistics.median(times[name])
            print(f"| {batch} | {hidden} | {name} | {median:.3f} | {steps * batch / median:,.0f} | "
                  f"{median / reference:.2f}x |")


def _version(name: str) -> str:
    return getattr(importlib.import_module(name.split(".")[0]), "__version__", "?")


if __name__ == "__main__":
    main()
