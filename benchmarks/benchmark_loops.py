"""The book-style loop and `fit` against a tight hand-written numpy loop, per epoch, over many processes.

    book-style loop  for each batch: grads = net.gradient(x[i], t[i]); optimizer.update(net.params,
                     grads), the labels checked at every step (SoftmaxWithLoss's default)
    fit              xbp.training.fit, one epoch (its own clock: the steps, not the accuracies after)
    written out      the same array operations as xbp's step, in one function without layers, net or
                     optimizer (benchmarks/step_instructions.py's written_out): the step without its Python
    numpy loop       benchmarks/benchmark.py's hand-written loop (numpy_epoch)

TwoLayerNet 784 -> 50 -> 10 (or --size), batch 100, SGD lr 0.1, float32, Fashion-MNIST's 60,000
training images, the same batches for all. Each of --processes child processes times every contender
for --rounds epochs, in a new random order every round, and gives each ratio as its median epoch over
the numpy loop's. One process's ratios are not the machine's: on a shared machine one epoch against the
next moves by 10-15%, and one process's fit ratio has been anywhere from 0.98x to 1.28x
(BENCHMARKS.md). So the figure is the median over the processes, with their range. With --tree
given twice or more, the processes take the trees in turn (each tree's xbp on PYTHONPATH, the numpy
loop this file's), for a before-and-after in one run:

    OPENBLAS_NUM_THREADS=1 python benchmarks/benchmark_loops.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/benchmark_loops.py --tree /tmp/before --tree .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONTENDERS = ("book-style loop", "fit", "written out", "numpy loop")


def one_process(size: str, rounds: int, seed: int) -> dict[str, float]:
    """The child: each contender's median epoch over the numpy loop's, and the loop's in seconds."""
    from benchmark import LR, epoch_order, initial_weights, numpy_epoch
    from step_instructions import written_out

    from xbp.datasets import load_mnist
    from xbp.nets import TwoLayerNet
    from xbp.optimizers import SGD
    from xbp.training import fit

    batch, hidden = (int(v) for v in size.split("x"))
    (x, t), _ = load_mnist(dataset="fashion-mnist")
    start = initial_weights(hidden, seed)

    book_net, fit_net = (TwoLayerNet(784, hidden, 10, seed=seed) for _ in range(2))
    book_opt, fit_opt = SGD(lr=LR), SGD(lr=LR)
    loop_params = {k: v.copy() for k, v in start.items()}
    written_params = {k: v.copy() for k, v in start.items()}

    def book_style(round_: int) -> float:
        began = time.perf_counter()
        for index in epoch_order(len(x), batch, seed + round_):
            book_opt.update(book_net.params, book_net.gradient(x[index], t[index]))
        return time.perf_counter() - began

    def by_fit(round_: int) -> float:
        history = fit(fit_net, fit_opt, (x, t), epochs=1, batch_size=batch, seed=seed + round_,
                      progress=False, log=None)
        return history["seconds"][0]

    def loop(round_: int) -> float:
        began = time.perf_counter()
        numpy_epoch(x, t, loop_params, epoch_order(len(x), batch, seed + round_))
        return time.perf_counter() - began

    def by_hand(round_: int) -> float:
        began = time.perf_counter()
        written_out(x, t, epoch_order(len(x), batch, seed + round_), written_params, LR)
        return time.perf_counter() - began

    contenders = dict(zip(CONTENDERS, (book_style, by_fit, by_hand, loop), strict=True))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    shuffle = np.random.default_rng(seed + 7)
    for round_ in range(rounds + 1):
        for name in shuffle.permutation(list(contenders)):
            seconds = contenders[name](round_)
            if round_:  # round 0 warms up
                times[name].append(seconds)
    reference = statistics.median(times["numpy loop"])
    return {**{name: statistics.median(values) / reference for name, values in times.items()},
            "numpy loop s": reference}


def spawn(tree: str | None, args: argparse.Namespace, index: int) -> dict[str, float]:
    """One child process on `tree` (None: the xbp this interpreter imports)."""
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(tree).resolve()), here])
    done = subprocess.run([sys.executable, __file__, "--child", "--size", args.size, "--rounds",
                           str(args.rounds), "--seed", str(args.seed + index)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a child process on {tree or 'this xbp'} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100x50", help="BATCHxHIDDEN (default 100x50)")
    parser.add_argument("--rounds", type=int, default=10, help="epochs of each contender a process")
    parser.add_argument("--processes", type=int, default=8, help="child processes per tree")
    parser.add_argument("--tree", action="append", help="a source tree whose xbp to time (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_process(args.size, args.rounds, args.seed)))
        return
    if args.processes < 1 or args.rounds < 1:
        raise SystemExit("--processes and --rounds must be at least 1.")
    trees = args.tree or [None]
    results: dict[str | None, list[dict[str, float]]] = {tree: [] for tree in trees}
    for index in range(args.processes):
        for tree in (trees[pick] for pick in np.random.default_rng(index).permutation(len(trees))):
            result = spawn(tree, args, index)
            results[tree].append(result)
            print(f"process {index + 1}/{args.processes}, {tree or 'this xbp'}: " + "  ".join(
                f"{name} {result[name]:.3f}x" for name in CONTENDERS[:-1])
                + f"  (numpy loop {result['numpy loop s']:.4f} s)", flush=True)
    print(f"\n{args.size}, {args.processes} processes of {args.rounds} rounds each: the median ratio "
          "over the processes [their range]")
    for tree, runs in results.items():
        print(f"  {tree or 'this xbp'}: " + "  ".join(
            f"{name} {statistics.median(r[name] for r in runs):.3f}x "
            f"[{min(r[name] for r in runs):.3f}-{max(r[name] for r in runs):.3f}]"
            for name in CONTENDERS[:-1]))


if __name__ == "__main__":
    main()
