"""A training run for tests/test_resume.py to kill: SIGKILL or SIGINT to itself after a chosen update.

    python tests/resume_child.py --checkpoint DIR --out final.npz [--kill-at N | --kill-in-save N |
        --interrupt-at N] [--resume] [--epochs 3] [--every 5]

It trains a MultiLayerNet with batch normalization and dropout by Adam (so a checkpoint must carry
parameters, running statistics, dropout streams, optimizer slots and its step count) on three
clusters, on the backend that XBP_BACKEND / XBP_DEVICE select, and writes the final `net.state()` and
the history (`.json` beside it). Exit status 130 after Ctrl-C, with the message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import xbp
import xbp.params_io
from xbp.nets import MultiLayerNet
from xbp.optimizers import Adam
from xbp.training import fit


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, size=n)
    centers = np.random.default_rng(1234).normal(0, 3, size=(3, 8))
    return (centers[t] + rng.normal(0, 0.5, size=(n, 8))).astype(np.float32), t


class Counting(Adam):
    """Adam that signals its own process after its N-th update (counted in this process)."""

    at: int | None = None
    signum = signal.SIGKILL

    def update(self, params: dict, grads: dict) -> None:
        super().update(params, grads)
        self.count = getattr(self, "count", 0) + 1
        if self.count == self.at:
            os.kill(os.getpid(), self.signum)


def kill_before_rename(nth: int) -> None:
    """SIGKILL this process in its nth checkpoint save, when the new file is whole but not yet renamed."""
    rename, calls = os.replace, [0]

    def replace(source: str, target: str) -> None:
        calls[0] += 1
        if calls[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        rename(source, target)

    xbp.params_io.os.replace = replace  # the module's os is the os module: this process only


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--kill-in-save", type=int)
    parser.add_argument("--interrupt-at", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    net = MultiLayerNet(8, [16, 16], 3, use_batchnorm=True, use_dropout=True, dropout_ratio=0.2, seed=1)
    optimizer = Counting(lr=0.01)
    optimizer.at = args.kill_at or args.interrupt_at
    if args.interrupt_at:
        optimizer.signum = signal.SIGINT
    if args.kill_in_save:
        kill_before_rename(args.kill_in_save)
    checkpoint = {} if args.checkpoint is None else {
        "checkpoint": args.checkpoint, "checkpoint_every": args.every, "resume": args.resume}
    try:
        history = fit(net, optimizer, blobs(), epochs=args.epochs, batch_size=20, seed=7, progress=False,
                      log=lambda line: print(line, file=sys.stderr), **checkpoint)
    except xbp.TrainingInterrupted as exc:
        print(exc, file=sys.stderr)
        sys.exit(130)
    xbp.save_params(args.out, net.state())
    args.out.with_suffix(".json").write_text(json.dumps(history))


if __name__ == "__main__":
    main()
