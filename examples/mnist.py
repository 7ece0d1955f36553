"""Train one of the book's networks on MNIST (or Fashion-MNIST), on the CPU or a GPU.

The defaults are the book's (chapter 5): 784 -> 50 -> 10, ReLU, softmax cross-entropy, SGD with
lr 0.1, batches of 100, about 10,000 iterations. `--net simple-conv` (chapter 7) and `--net deep-conv`
(chapter 8) train the convolutional nets on 1 x 28 x 28 images with the book's settings for them:
Adam with lr 0.001 and 20 epochs, unless told otherwise. Without --dataset it trains on MNIST, or, when
MNIST cannot be downloaded, on Fashion-MNIST (from --data-dir or Debian's dataset-fashion-mnist,
installed with apt-get when run as root), and says so. The backend comes from XBP_BACKEND (or
--backend), so the same command trains on numpy or on CuPy:

    python examples/mnist.py
    XBP_BACKEND=cupy python examples/mnist.py
    python examples/mnist.py --dataset fashion-mnist --epochs 3 --plot curves.png --save net.npz
    python examples/mnist.py --layers 100,100,100 --batchnorm --dropout 0.2 --optimizer adam
    XBP_BACKEND=cupy python examples/mnist.py --net simple-conv --epochs 5   # what a GPU is for
    mpiexec -n 4 python examples/mnist.py --distributed    # 4 processes, each a quarter of each batch
    python examples/mnist.py --checkpoint runs/book      # Ctrl-C, then the same command + --resume
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

import xbp
from xbp import distributed  # mpi4py loads only in distributed.init()
from xbp.backend import device_name
from xbp.checkpoints import Checkpoints
from xbp.datasets.fallback import load_training_data
from xbp.nets import DeepConvNet, MultiLayerNet, Net, SimpleConvNet, TwoLayerNet
from xbp.optimizers import SGD, AdaGrad, Adam, Momentum
from xbp.params_io import write_atomically
from xbp.training import fit

OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adagrad": AdaGrad, "adam": Adam}
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adagrad": 0.01, "adam": 0.001}
BOOK_ITERATIONS = 10_000
NETS = ("two-layer", "multi-layer", "simple-conv", "deep-conv")
CONV_NETS = {"simple-conv": (SimpleConvNet, 100), "deep-conv": (DeepConvNet, 50)}  # class, book's hidden
CONV_EPOCHS = 20  # the book's train_convnet.py and train_deepnet.py


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"],
                        help="default: mnist, or fashion-mnist when MNIST cannot be downloaded")
    parser.add_argument("--backend", help="overrides XBP_BACKEND (numpy, cupy, torch, jax.numpy, "
                        "array_api_strict)")
    parser.add_argument("--device", help="a device of the backend: 1 or cuda:1 for CuPy, device1 for "
                        "array_api_strict (overrides XBP_DEVICE)")
    parser.add_argument("--epochs", type=int, help=f"default: enough for the book's {BOOK_ITERATIONS:,} "
                        f"iterations, or {CONV_EPOCHS} for the convolutional nets")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--net", choices=NETS, help="default: two-layer, or multi-layer when --layers, "
                        "--batchnorm, --dropout or --weight-decay ask for one")
    parser.add_argument("--hidden", type=int, help="hidden units of the TwoLayerNet (default 50) or of "
                        "the convolutional nets' Affine layer (the book's: 100 simple-conv, 50 deep-conv)")
    parser.add_argument("--layers", help="hidden sizes of a MultiLayerNet instead, e.g. 100,100,100")
    parser.add_argument("--batchnorm", action="store_true", help="MultiLayerNet with BatchNormalization")
    parser.add_argument("--dropout", type=float, default=0.0, metavar="RATIO",
                        help="MultiLayerNet with Dropout of this ratio")
    parser.add_argument("--weight-decay", type=float, default=0.0, metavar="LAMBDA",
                        help="MultiLayerNet with L2 weight decay")
    parser.add_argument("--lr", type=float, help="default: 0.1 for sgd (the book's chapter 5), "
                        "0.01 for momentum and adagrad, 0.001 for adam")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                        help="default: sgd, or adam for the convolutional nets (the book's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--data-dir", help="a folder holding the four .gz files (else the cache, "
                        "downloading what is missing)")
    parser.add_argument("--save", type=Path, metavar="PATH", help="write the trained parameters (.npz), "
                        "and what trained them beside it (PATH.json)")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="write loss and accuracy curves (PNG)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="train on the first N images only (quick runs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or epoch lines")
    parser.add_argument("--distributed", action="store_true", help="data-parallel training as one of "
                        "the ranks mpiexec started (automatic when it started more than one); with "
                        "CuPy, one GPU per rank")
    parser.add_argument("--checkpoint", type=Path, metavar="DIR", help="save the run to this folder at "
                        "the end of each epoch (and on Ctrl-C), to resume it with --resume")
    parser.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                        help="with --checkpoint: also save every STEPS steps")
    parser.add_argument("--keep", type=int, default=1, metavar="N",
                        help="with --checkpoint: keep the newest N checkpoints (default 1)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint "
                        "DIR exactly where it stopped (give the same options as when it started)")
    args = parser.parse_args(argv)
    dense_options = args.layers or args.batchnorm or args.dropout or args.weight_decay
    if args.net is None:
        args.net = "multi-layer" if dense_options else "two-layer"
    elif dense_options and args.net != "multi-layer":
        parser.error(f"--layers, --batchnorm, --dropout and --weight-decay shape a multi-layer net, not "
                     f"--net {args.net}")
    if args.optimizer is None:
        args.optimizer = "adam" if args.net in CONV_NETS else "sgd"
    return args


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
    """Write the curves of `history` to the PNG `path`: a temporary file, fsync, then os.replace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = curves(history, title)
    try:
        write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=100))
    finally:
        plt.close(figure)


def curves(history: dict[str, list[float]], title: str) -> Any:
    """Loss per iteration (raw and smoothed) and per epoch, and accuracy per epoch, on whole-epoch ticks."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = len(history["loss"])
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    iter_loss = np.asarray(history.get("iter_loss", []), dtype=np.float64)
    if iter_loss.size:
        steps = iter_loss.size // epochs
        where = np.arange(1, iter_loss.size + 1) / steps  # in epochs: step k of epoch e is e - 1 + k/steps
        window = max(1, steps // 10)
        smooth = np.convolve(iter_loss, np.ones(window) / window, mode="valid")
        loss_axes.plot(where, iter_loss, color="C0", alpha=0.25, linewidth=0.5, label="per iteration")
        loss_axes.plot(where[window - 1:], smooth, color="C0", linewidth=1.2,
                       label=f"mean of {window} iterations" if window > 1 else "per iteration")
    loss_axes.plot(np.arange(1, epochs + 1) - 0.5, history["loss"], "o", color="C1",
                   label="mean of the epoch")
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="loss")
    loss_axes.legend(loc="upper right")
    acc_axes.plot(range(1, epochs + 1), history["train_acc"], marker="o", label="train")
    if history["test_acc"]:
        acc_axes.plot(range(1, epochs + 1), history["test_acc"], marker="s", linestyle="--", label="test")
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="accuracy (after each epoch)", ylim=(0, 1.0))
    acc_axes.legend(loc="lower right")
    for axes in (loss_axes, acc_axes):
        axes.set_xlim(0, 1.03 * epochs)  # room for the last epoch's markers
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def build_net(args: argparse.Namespace) -> tuple[Net, str]:
    """The net --net names: the book's TwoLayerNet, a MultiLayerNet, SimpleConvNet or DeepConvNet."""
    if args.net in CONV_NETS:
        net_class, book_hidden = CONV_NETS[args.net]
        hidden = book_hidden if args.hidden is None else args.hidden
        try:
            net = net_class(hidden_size=hidden, seed=args.seed, dtype=args.dtype)
        except ValueError as exc:
            sys.exit(f"error: {exc}")
        return net, f"{net_class.__name__} 1x28x28, hidden {hidden}"
    hidden_size = 50 if args.hidden is None else args.hidden
    if args.net == "two-layer":
        return TwoLayerNet(784, hidden_size, 10, seed=args.seed, dtype=args.dtype), \
            f"TwoLayerNet 784-{hidden_size}-10"
    try:
        hidden = [int(size) for size in (args.layers or str(hidden_size)).split(",")]
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


def train(args: argparse.Namespace, net: Net, optimizer: object, train_set: tuple, test_set: tuple,
          epochs: int, *, dataset: str, comm: object = None) -> dict[str, list[float]]:
    """fit, with --checkpoint / --resume; Ctrl-C and a diverging loss end with a message, not a traceback."""
    if (args.resume or args.checkpoint_every) and args.checkpoint is None:
        sys.exit("error: --resume and --checkpoint-every need --checkpoint DIR.")
    checkpoint = None if args.checkpoint is None else \
        Checkpoints(args.checkpoint, keep=args.keep, settings={"dataset": dataset})
    try:
        return fit(net, optimizer, train_set, epochs=epochs, batch_size=args.batch_size, seed=args.seed,
                   eval=test_set, progress=not args.no_progress, checkpoint=checkpoint,
                   checkpoint_every=args.checkpoint_every, resume=args.resume, comm=comm)
    except xbp.TrainingInterrupted as exc:
        print(f"\n{exc}".replace("resume=True (examples/mnist.py: --resume)", "--resume"), file=sys.stderr)
        sys.exit(130)
    except (xbp.TrainingDivergedError, xbp.CheckpointError, ValueError) as exc:
        sys.exit(f"error: {exc}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_outputs(args)
    try:
        # load the backend, find the device and run a kernel on it now, before any work
        device = args.device or (None if args.backend else xbp.get_device())  # XBP_DEVICE
        xbp.set_backend(args.backend or xbp.get_backend(), device=device)
    except xbp.BackendError as exc:
        sys.exit(f"error: {exc}")
    comm = None
    if args.distributed or distributed.launched_size() > 1:  # one rank of mpiexec -n N
        try:
            comm = distributed.init()  # before the net: with CuPy it selects this rank's GPU
        except distributed.DistributedError as exc:
            sys.exit(f"error: {exc}")
        if not comm.is_root:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - rank 0 prints, saves and plots
    root = comm is None or comm.is_root

    try:
        net, description = build_net(args)  # before the data, so a bad option fails at once
    except (xbp.XbpError, RuntimeError) as exc:  # CUDA errors (out of memory, ...) are RuntimeErrors
        sys.exit(f"error: cannot make the net on {xbp.get_backend()}: {exc}")
    try:
        data = load_training_data(args.dataset, args.data_dir)
    except xbp.DatasetError as exc:
        sys.exit(f"error: {exc}")
    (x_train, t_train), (x_test, t_test) = data.train, data.test
    if args.limit is not None:
        x_train, t_train = x_train[: args.limit], t_train[: args.limit]
    x_train, x_test = x_train.astype(args.dtype), x_test.astype(args.dtype)
    if args.net in CONV_NETS:  # images, not rows of pixels
        x_train, x_test = x_train.reshape(-1, 1, 28, 28), x_test.reshape(-1, 1, 28, 28)
    steps = len(x_train) // args.batch_size
    epochs = args.epochs or (CONV_EPOCHS if args.net in CONV_NETS else math.ceil(BOOK_ITERATIONS / steps))

    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    optimizer = OPTIMIZERS[args.optimizer](lr=lr)
    print(f"xbp {xbp.__version__}  backend {xbp.get_backend()}  device {device_name(xbp.get_device())}")
    print(f"{data.dataset} from {data.source}: {len(x_train):,} training and {len(x_test):,} test images")
    print(f"{description} {args.dtype}, {args.optimizer} lr {lr}, batch "
          f"{args.batch_size}, {epochs} epochs ({epochs * steps:,} iterations), seed {args.seed}")
    if comm is not None:
        print(f"data parallel over {comm.size} ranks: {args.batch_size // comm.size} samples "
              "of each batch per rank")

    history = train(args, net, optimizer, (x_train, t_train), (x_test, t_test), epochs,
                    dataset=data.dataset, comm=comm)
    seconds = sum(history["seconds"])
    print(f"final: test accuracy {history['test_acc'][-1]:.4f}, train accuracy "
          f"{history['train_acc'][-1]:.4f}, {seconds:.1f} s training "
          f"({np.median(history['seconds']):.3f} s per epoch, median)")
    if args.save is not None and root:
        xbp.save_params(args.save, net.state())
        metadata = {
            "dataset": data.dataset, "source": str(data.source), "train_images": len(x_train),
            "net": description, "dtype": args.dtype, "optimizer": args.optimizer, "lr": lr,
            "batch_size": args.batch_size, "epochs": epochs, "seed": args.seed,
            "backend": xbp.get_backend(), "train_acc": history["train_acc"][-1],
            "test_acc": history["test_acc"][-1], "xbp": xbp.__version__}
        write_atomically(args.save.with_name(args.save.name + ".json"),
                         lambda file: file.write(json.dumps(metadata, indent=2).encode() + b"\n"))
        print(f"saved the parameters to {args.save} (what trained them: {args.save}.json)")
    if args.plot is not None and root:
        plot(args.plot, history, f"{description} on {data.dataset} ({xbp.get_backend()})")
        print(f"wrote the curves to {args.plot}")


if __name__ == "__main__":
    with distributed.abort_on_error():  # under mpiexec, one rank's error ends every rank
        main()
