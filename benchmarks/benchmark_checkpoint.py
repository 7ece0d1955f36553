"""What checkpointing costs per epoch: the seconds of one save against the seconds of one epoch.

For each (batch, hidden) size, the book's network (784 -> hidden -> 10, SGD or Adam, float32) trains on
Fashion-MNIST (or MNIST) for a few epochs twice: without checkpoints, then with `checkpoint=DIR` (one
save at the end of each epoch, fsync included). Reported: the median epoch seconds without
checkpoints, the median seconds of one save (timed around the save itself: copy to the host, finite
check, SHA-256, write, fsync, rename), their ratio, the checkpoint's size, and the seconds of a
`resume=True` that finds the run finished (read, checks, settings, loading).

    python benchmarks/benchmark_checkpoint.py --dataset fashion-mnist --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import xbp
import xbp.resume
from xbp.datasets import load_mnist
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD, Adam
from xbp.training import fit

SIZES = [(100, 50), (1000, 1000)]


def timed_saves() -> list[float]:
    """Wrap the checkpointing hook's save so that each one is timed; returns the list the times go to."""
    seconds: list[float] = []
    save = xbp.resume.Checkpointing._save

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        save(self, *args, **kwargs)
        seconds.append(time.perf_counter() - start)

    xbp.resume.Checkpointing._save = timed
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    args = parser.parse_args()
    (x, t), _ = load_mnist(dataset=args.dataset)
    saves = timed_saves()
    make = (lambda: SGD(lr=0.1)) if args.optimizer == "sgd" else (lambda: Adam(lr=0.001))
    print(f"xbp {xbp.__version__}, backend {xbp.get_backend()}, {args.dataset} ({len(x):,} samples), "
          f"{args.optimizer}, {args.epochs} epochs per contender")
    print("| batch | hidden | s/epoch, no checkpoint (median) | s/save (median) | save / epoch | "
          "checkpoint MB | s to resume |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for batch, hidden in SIZES:
        saves.clear()
        with tempfile.TemporaryDirectory() as folder:
            plain = fit(TwoLayerNet(784, hidden, 10, seed=0), make(), (x, t), epochs=args.epochs,
                        batch_size=batch, seed=0, progress=False, log=None)["seconds"]
            net = TwoLayerNet(784, hidden, 10, seed=0)
            fit(net, make(), (x, t), epochs=args.epochs, batch_size=batch, seed=0, progress=False,
                log=None, checkpoint=folder)
            size = sum(item.stat().st_size for item in Path(folder).iterdir()) / 2**20
            start = time.perf_counter()
            fit(TwoLayerNet(784, hidden, 10, seed=0), make(), (x, t), epochs=args.epochs,
                batch_size=batch, seed=0, progress=False, log=None, checkpoint=folder, resume=True)
            load = time.perf_counter() - start
        epoch_s, save_s = statistics.median(plain), statistics.median(saves)
        print(f"| {batch} | {hidden} | {epoch_s:.3f} | {save_s:.4f} | {save_s / epoch_s:.1%} | "
              f"{size:.2f} | {load:.3f} |")


if __name__ == "__main__":
    main()
