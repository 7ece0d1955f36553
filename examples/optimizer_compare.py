"""SGD, Momentum, AdaGrad and Adam on the same MultiLayerNet: the book's optimizer comparison (ch. 6).

Four copies of one net (784-100-100-100-100-10, ReLU, He initialization, the same seed) train on
the same mini-batches of Fashion-MNIST, one optimizer each, with the book's learning rates. The
loss of every step is kept; at the end a table gives each optimizer's final loss and test accuracy,
and a PNG shows the four loss curves (matplotlib: pip install "xbp[plot]").

    python examples/optimizer_compare.py                       # numpy, 500 steps, optimizer_compare.png
    python examples/optimizer_compare.py --iters 2000 --backend cupy --plot curves.png
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

import xbp
from xbp.nets import MultiLayerNet
from xbp.optimizers import SGD, AdaGrad, Adam, Momentum


def optimizers() -> dict[str, Any]:
    """The book's four optimizers with its learning rates."""
    return {"SGD": SGD(lr=0.01), "Momentum": Momentum(lr=0.01), "AdaGrad": AdaGrad(lr=0.01),
            "Adam": Adam(lr=0.001)}


def compare(x_train: Any, t_train: Any, *, iters: int, batch_size: int,
            seed: int) -> tuple[dict[str, MultiLayerNet], dict[str, list[float]]]:
    """The trained nets and the loss of each step, per optimizer.

    Every net starts from the same weights and sees the same batches.
    """
    xp = xbp.array_namespace(x_train)
    rng = np.random.default_rng(seed)
    opts = optimizers()
    nets = {name: MultiLayerNet(784, [100] * 4, 10, seed=seed) for name in opts}
    for net in nets.values():  # load_mnist checked every label once; a check per call reads the device
        net.last_layer.check_labels = False
    losses: dict[str, list[Any]] = {name: [] for name in opts}
    for _ in range(iters):
        index = xbp.asarray(rng.integers(0, x_train.shape[0], batch_size))  # the book's choice()
        x_batch, t_batch = xp.take(x_train, index, axis=0), xp.take(t_train, index, axis=0)
        for name, optimizer in opts.items():
            net = nets[name]
            optimizer.update(net.params, net.gradient(x_batch, t_batch))
            losses[name].append(net.loss(x_batch, t_batch))  # stays on the device until the end
    return nets, {name: [float(loss) for loss in values] for name, values in losses.items()}


def smooth(values: list[float], window: int = 20) -> np.ndarray:
    """A moving average, so the curves can be told apart."""
    values_array = np.asarray(values)
    if len(values_array) < window:
        return values_array
    return np.convolve(values_array, np.ones(window) / window, mode="valid")


def plot(losses: dict[str, list[float]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for (name, values), marker in zip(losses.items(), "osD^", strict=True):
        line, = ax.plot(values, alpha=0.2, linewidth=0.8)
        curve = smooth(values)
        steps = np.arange(len(curve)) + (len(values) - len(curve)) / 2
        ax.plot(steps, curve, color=line.get_color(), marker=marker, markevery=max(len(curve) // 8, 1),
                label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (mini-batch)")
    ax.set_ylim(0, min(2.5, max(max(v) for v in losses.values()) * 1.05))
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=500, help="training steps (default 500; the book: 2000)")
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batches")
    parser.add_argument("--backend", default=None, help="array backend (default: XBP_BACKEND or numpy)")
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist"])
    parser.add_argument("--plot", default="optimizer_compare.png", metavar="PATH",
                        help="where to write the loss curves (default optimizer_compare.png)")
    parser.add_argument("--no-plot", action="store_true", help="print the table only")
    args = parser.parse_args(argv)

    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit('the plot needs matplotlib: pip install "xbp[plot]" (or pass --no-plot)')
    if args.backend:
        xbp.set_backend(args.backend)

    from xbp.datasets import load_mnist

    (x_train, t_train), (x_test, t_test) = load_mnist(dataset=args.dataset)
    x_train, t_train = xbp.asarray(x_train), xbp.asarray(t_train)
    x_test, t_test = xbp.asarray(x_test), xbp.asarray(t_test)

    print(f"{args.dataset}: {args.iters} steps of {args.batch_size} on {xbp.get_backend()}, "
          "MultiLayerNet 784-100x4-10, seed", args.seed)
    start = time.perf_counter()
    nets, losses = compare(x_train, t_train, iters=args.iters, batch_size=args.batch_size, seed=args.seed)
    elapsed = time.perf_counter() - start
    tail = max(args.iters // 10, 1)
    print(f"{'optimizer':10} {'final loss':>10} {'test acc':>9}   (loss: mean of the last {tail} steps)")
    for name, values in losses.items():
        accuracy = nets[name].accuracy(x_test, t_test)
        print(f"{name:10} {np.mean(values[-tail:]):10.4f} {accuracy:9.4f}")
    print(f"trained in {elapsed:.1f} s")
    if not args.no_plot:
        plot(losses, args.plot, f"Optimizers on {args.dataset} (MultiLayerNet 784-100x4-10)")
        print(f"loss curves written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
