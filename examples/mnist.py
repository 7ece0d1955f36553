"""Train the book's two-layer network on MNIST (or Fashion-MNIST), on the CPU or a GPU.

The defaults are the book's (chapter 5): 784 -> 50 -> 10, ReLU, softmax cross-entropy, SGD with
lr 0.1, batches of 100, about 10,000 iterations. The backend comes from XBP_BACKEND (or
--backend), so the same command trains on numpy or on CuPy:

    python examples/mnist.py
    XBP_BACKEND=cupy python examples/mnist.py
    python examples/mnist.py --dataset fashion-mnist --epochs 3 --plot curves.png --save net.npz
    python examples/mnist.py --layers 100,100,100 --batchnorm --dropout 0.2 --optimizer adam
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

import xbp
from xbp.backend import device_name
from xbp.datasets import load_mnist
from xbp.nets import MultiLayerNet, Net, TwoLayerNet
from xbp.optimizers import SGD, AdaGrad, Adam, Momentum
from xbp.training import fit

OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adagrad": AdaGrad, "adam": Adam}
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adagrad": 0.01, "adam": 0.001}
BOOK_ITERATIONS = 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--backend", help="overrides XBP_BACKEND (numpy, cupy, torch, jax.numpy, "
                        "array_api_strict)")
    parser.add_argument("--device", help="a device of the backend: 1 or cuda:1 for CuPy, device1 for "
                        "array_api_strict (overrides XBP_DEVICE)")
    parser.add_argument("--epochs", type=int, help=f"default: enough for the book's {BOOK_ITERATIONS:,} "
                        "iterations")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=50, help="hidden units of the TwoLayerNet")
    parser.add_argument("--layers", help="hidden sizes of a MultiLayerNet instead, e.g. 100,100,100")
    parser.add_argument("--batchnorm", action="store_true", help="MultiLayerNet with BatchNormalization")
    parser.add_argument("--dropout", type=float, default=0.0, metavar="RATIO",
                        help="MultiLayerNet with Dropout of this ratio")
    parser.add_argument("--weight-decay", type=float, default=0.0, metavar="LAMBDA",
                        help="MultiLayerNet with L2 weight decay")
    parser.add_argument("--lr", type=float, help="default: 0.1 for sgd (the book's chapter 5), "
                        "0.01 for momentum and adagrad, 0.001 for adam")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--data-dir", help="a folder holding the four .gz files (else the cache, "
                        "downloading what is missing)")
    parser.add_argument("--save", type=Path, metavar="PATH", help="write the trained parameters (.npz)")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="write loss and accuracy curves (PNG)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="train on the first N images only (quick runs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or epoch lines")
    return parser.parse_args(argv)


def check_outputs(args: argparse.Namespace) -> None:
    """Fail before training, not after it, when the results could not be written."""
    for path in (args.save, args.plot):
        if path is not None and not path.resolve().parent.is_dir():
            sys.exit(f"error: the folder of {path} does not exist; create it or choose another path.")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit('error: --plot needs matplotlib: pip install "xbp[plot]" (or pip install matplotlib).')


def plot(path: Path, history: dict[str, list[float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, history["loss"], marker="o")
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="loss")
    acc_axes.plot(epochs, history["train_acc"], marker="o", label="train")
    acc_axes.plot(epochs, history["test_acc"], marker="s", linestyle="--", label="test")
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.0))
    acc_axes.legend(loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=100)
    temporary.replace(path)
    plt.close(figure)


def build_net(args: argparse.Namespace) -> tuple[Net, str]:
    """The book's TwoLayerNet, or a MultiLayerNet when --layers, --batchnorm or --dropout ask for one."""
    if not (args.layers or args.batchnorm or args.dropout or args.weight_decay):
        return TwoLayerNet(784, args.hidden, 10, seed=args.seed, dtype=args.dtype), \
            f"TwoLayerNet 784-{args.hidden}-10"
    try:
        hidden = [int(size) for size in (args.layers or str(args.hidden)).split(",")]
    except ValueError:
        sys.exit(f"error: --layers takes hidden sizes separated by commas, like 100,100,100; "
                 f"got {args.layers!r}.")
    try:
        net = MultiLayerNet(784, hidden, 10, use_batchnorm=args.batchnorm,
                            use_dropout=args.dropout > 0, dropout_ratio=args.dropout or 0.5,
                            weight_decay_lambda=args.weight_decay, seed=args.seed, dtype=args.dtype)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    extras = [name for name, on in (("batchnorm", args.batchnorm),
                                    (f"dropout {args.dropout}", args.dropout),
                                    (f"weight decay {args.weight_decay}", args.weight_decay)) if on]
    sizes = "-".join(str(size) for size in [784, *hidden, 10])
    return net, f"MultiLayerNet {sizes}" + (f" ({', '.join(extras)})" if extras else "")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_outputs(args)
    try:
        if args.backend or args.device:
            xbp.set_backend(args.backend or xbp.get_backend(), device=args.device)
        xbp.get_namespace()  # load the backend and find the device now, before any work
        xbp.get_device()
    except xbp.BackendError as exc:
        sys.exit(f"error: {exc}")

    try:
        net, description = build_net(args)  # before the data, so a bad option fails at once
    except xbp.BackendError as exc:  # float64 on JAX without 64-bit arrays
        sys.exit(f"error: {exc}")
    try:
        (x_train, t_train), (x_test, t_test) = load_mnist(dataset=args.dataset, data_dir=args.data_dir)
    except xbp.DatasetError as exc:
        sys.exit(f"error: {exc}")
    if args.limit is not None:
        x_train, t_train = x_train[: args.limit], t_train[: args.limit]
    x_train, x_test = x_train.astype(args.dtype), x_test.astype(args.dtype)
    steps = len(x_train) // args.batch_size
    epochs = args.epochs or math.ceil(BOOK_ITERATIONS / steps)

    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    optimizer = OPTIMIZERS[args.optimizer](lr=lr)
    print(f"xbp {xbp.__version__}  backend {xbp.get_backend()}  device {device_name(xbp.get_device())}")
    print(f"{args.dataset}: {len(x_train):,} training and {len(x_test):,} test images")
    print(f"{description} {args.dtype}, {args.optimizer} lr {lr}, batch "
          f"{args.batch_size}, {epochs} epochs ({epochs * steps:,} iterations), seed {args.seed}")

    history = fit(net, optimizer, (x_train, t_train), epochs=epochs, batch_size=args.batch_size,
                  seed=args.seed, eval=(x_test, t_test), progress=not args.no_progress)
    seconds = sum(history["seconds"])
    print(f"final: test accuracy {history['test_acc'][-1]:.4f}, train accuracy "
          f"{history['train_acc'][-1]:.4f}, {seconds:.1f} s training "
          f"({np.median(history['seconds']):.3f} s per epoch, median)")
    if args.save is not None:
        xbp.save_params(args.save, net.state())
        print(f"saved the parameters to {args.save}")
    if args.plot is not None:
        plot(args.plot, history, f"{description} on {args.dataset} ({xbp.get_backend()})")
        print(f"wrote the curves to {args.plot}")


if __name__ == "__main__":
    main()
