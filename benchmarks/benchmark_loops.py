"""The book-style loop and `fit` against a tight hand-written numpy loop, per epoch, in one process.

    book-style loop  for each batch: grads = net.gradient(x[i], t[i]); optimizer.update(net.params,
                     grads), the labels checked at every step (SoftmaxWithLoss's default)
    fit              xbp.training.fit, one epoch (its own clock: the steps, not the accuracies after)
    written out      the same array operations as xbp's step, in one function without layers, net or
                     optimizer (benchmarks/step_instructions.py's written_out): the step without its Python
    numpy loop       benchmarks/benchmark.py's hand-written loop (numpy_epoch)

TwoLayerNet 784 -> 50 -> 10 (or --size), batch 100, SGD lr 0.1, float32, Fashion-MNIST's 60,000
training images, the same batches for all; the contenders take turns in a new random order every
round, and each ratio is the median epoch over the numpy loop's. Run it on two source trees in turn
to compare them (the numpy loop is this file's either way):

    OPENBLAS_NUM_THREADS=1 python benchmarks/benchmark_loops.py
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=/tmp/before python benchmarks/benchmark_loops.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from benchmark import LR, epoch_order, initial_weights, numpy_epoch
from step_instructions import written_out

import xbp
from xbp.datasets import load_mnist
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD
from xbp.training import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100x50", help="BATCHxHIDDEN (default 100x50)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    batch, hidden = (int(v) for v in args.size.split("x"))
    (x, t), _ = load_mnist(dataset="fashion-mnist")
    start = initial_weights(hidden, args.seed)

    book_net, fit_net = (TwoLayerNet(784, hidden, 10, seed=args.seed) for _ in range(2))
    book_opt, fit_opt = SGD(lr=LR), SGD(lr=LR)
    loop_params = {k: v.copy() for k, v in start.items()}
    written_params = {k: v.copy() for k, v in start.items()}

    def book_style(round_: int) -> float:
        began = time.perf_counter()
        for index in epoch_order(len(x), batch, args.seed + round_):
            book_opt.update(book_net.params, book_net.gradient(x[index], t[index]))
        return time.perf_counter() - began

    def by_fit(round_: int) -> float:
        history = fit(fit_net, fit_opt, (x, t), epochs=1, batch_size=batch, seed=args.seed + round_,
                      progress=False, log=None)
        return history["seconds"][0]

    def loop(round_: int) -> float:
        began = time.perf_counter()
        numpy_epoch(x, t, loop_params, epoch_order(len(x), batch, args.seed + round_))
        return time.perf_counter() - began

    def by_hand(round_: int) -> float:
        began = time.perf_counter()
        written_out(x, t, epoch_order(len(x), batch, args.seed + round_), written_params, LR)
        return time.perf_counter() - began

    contenders = {"book-style loop": book_style, "fit": by_fit, "written out": by_hand, "numpy loop": loop}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    shuffle = np.random.default_rng(7)
    for round_ in range(args.rounds + 1):
        for name in shuffle.permutation(list(contenders)):
            seconds = contenders[name](round_)
            if round_:  # round 0 warms up
                times[name].append(seconds)
    reference = statistics.median(times["numpy loop"])
    print(f"xbp from {Path(xbp.__file__).parent}, {args.size}, {args.rounds} rounds:", end="")
    for name, values in times.items():
        print(f"  {name} {statistics.median(values):.4f} s ({statistics.median(values) / reference:.3f}x)",
              end="")
    print()


if __name__ == "__main__":
    main()
