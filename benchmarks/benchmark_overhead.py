"""Microseconds per training step that xbp adds to a tight numpy loop, and where they go.

Three ways to train the book's network (784 -> hidden -> 10, ReLU, softmax cross-entropy, SGD lr 0.1,
float32) on the same batches, taking turns in a new random order every round:

    fit          xbp.training.fit: the Net, its optimizer, the training loop
    layers       the same layer objects' forward/backward called one after the other, and
                 backend.subtract_scaled: the book's layer protocol with nothing around it
    numpy loop   benchmarks/benchmark.py's hand-written loop (every array allocated once, out= and
                 in place), and the same loop again as an A/A control

At a tiny size (the default, batch 2 and hidden 2) the arrays cost almost nothing, so the excess over
the loop is the Python each step runs; at a larger size it also holds the cost of new arrays.

    python benchmarks/benchmark_overhead.py                      # batch 2, hidden 2
    python benchmarks/benchmark_overhead.py --size 100x50 --steps 200
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from benchmark import LR, epoch_order, initial_weights, numpy_epoch

from xbp.backend import batch_taker, subtract_scaled
from xbp.datasets import load_mnist
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD
from xbp.training import fit


def layers_epoch(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, order: np.ndarray) -> None:
    """One epoch through the net's layers, called directly (no Net method, no optimizer, no fit)."""
    affine1, relu, affine2 = net.layers.values()
    last = net.last_layer
    take_x, take_t = batch_taker(x, order.shape[1]), batch_taker(t, order.shape[1])
    pairs = [(affine1.W, "dW", affine1), (affine1.b, "db", affine1),
             (affine2.W, "dW", affine2), (affine2.b, "db", affine2)]
    for index in order:
        last.forward(affine2.forward(relu.forward(affine1.forward(take_x(index)))), take_t(index))
        affine1.backward(relu.backward(affine2.backward(last.backward(1))), need_dx=False)
        for param, grad, layer in pairs:
            subtract_scaled(param, LR, getattr(layer, grad))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="2x2", help="BATCHxHIDDEN (default 2x2)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per epoch (default 1000)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    batch, hidden = (int(v) for v in args.size.split("x"))
    (x, t), _ = load_mnist(dataset=args.dataset, data_dir=args.data_dir)
    n = args.steps * batch
    if n > len(x):
        raise SystemExit(f"--steps {args.steps} x batch {batch} is more than the {len(x)} samples.")
    x, t = x[:n], t[:n]

    fit_net, layers_net = TwoLayerNet(784, hidden, 10, seed=0), TwoLayerNet(784, hidden, 10, seed=0)
    layers_net.last_layer.check_labels = False  # as fit does after checking the labels once
    optimizer = SGD(lr=LR)
    loop_params, control_params = initial_weights(hidden, 0), initial_weights(hidden, 0)

    def timed(run: Callable[[np.ndarray], object]) -> Callable[[int], float]:
        def clocked(round_: int) -> float:
            start = time.perf_counter()
            run(epoch_order(n, batch, round_))
            return time.perf_counter() - start
        return clocked

    contenders = {
        "fit": lambda r: fit(fit_net, optimizer, (x, t), epochs=1, batch_size=batch, seed=r,
                             progress=False, log=None)["seconds"][0],  # the steps only, by fit's clock
        "layers": timed(lambda order: layers_epoch(layers_net, x, t, order)),
        "numpy loop": timed(lambda order: numpy_epoch(x, t, loop_params, order)),
        "numpy loop (A/A)": timed(lambda order: numpy_epoch(x, t, control_params, order)),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    shuffle = np.random.default_rng(12345)
    for round_ in range(args.rounds):
        for name in shuffle.permutation(list(contenders)):
            times[name].append(contenders[name](round_))

    reference = statistics.median(times["numpy loop"]) / args.steps * 1e6
    print(f"batch {batch}, hidden {hidden}, {args.steps} steps an epoch, {args.rounds} rounds; "
          "median microseconds per step")
    print("| contender | us/step | excess over the loop, us/step | vs loop |")
    print("| --- | --- | --- | --- |")
    for name, values in times.items():
        per_step = statistics.median(values) / args.steps * 1e6
        print(f"| {name} | {per_step:.1f} | {per_step - reference:+.1f} | {per_step / reference:.2f}x |")


if __name__ == "__main__":
    main()
