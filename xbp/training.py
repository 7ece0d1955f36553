"""Training on whatever device the net lives on: mini-batch SGD the book's way, without host trips.

`fit` moves the data set to the net's device once. Each epoch it draws a permutation on the host
from `numpy.random.default_rng(seed)` (so CPU and GPU runs see the same batches), moves the batch
indices to the device in one piece, gathers each batch there, and adds each step's loss to a
device scalar that is read back once per epoch. Labels are checked once, before training, instead
of at every step. Evaluation also runs on the device, in batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from xbp import backend
from xbp.backend import array_namespace
from xbp.progress import ProgressBar

__all__ = ["evaluate", "fit"]


class Trainable(Protocol):
    params: dict[str, Any]
    last_layer: Any

    @property
    def device(self) -> Any: ...

    def predict(self, x: Any) -> Any: ...
    def gradient(self, x: Any, t: Any) -> dict[str, Any]: ...


class Optimizer(Protocol):
    def update(self, params: dict[str, Any], grads: dict[str, Any]) -> None: ...


def fit(net: Trainable, optimizer: Optimizer, train: tuple[Any, Any], *, epochs: int,
        batch_size: int = 100, seed: int | None = 0, eval: tuple[Any, Any] | None = None,
        progress: bool = True, log: Callable[[str], None] | None = print) -> dict[str, list[float]]:
    """Train `net` for `epochs` passes over `train` = (x, t); returns the per-epoch history.

    Each epoch visits every sample once in a random order (`len(x) // batch_size` steps; the last
    partial batch is dropped). The history holds, per epoch: `loss` (mean training loss over the
    epoch's steps), `train_acc` and `test_acc` (after the epoch; `test_acc` only with `eval`),
    `seconds` (training time, without evaluation) and `samples_per_s`. With `progress`, a bar on
    stderr follows each epoch and `log` (default `print`) gets one line per epoch.
    """
    x, t = train
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got epochs={epochs}, "
                         f"batch_size={batch_size}.")
    n = x.shape[0]
    if n != t.shape[0]:
        raise ValueError(f"train has {n} samples but {t.shape[0]} labels.")
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training samples.")

    where = net.device
    classes = _check_labels(net, x, t, "train")
    x, t = backend.to_device(x, where), backend.to_device(t, where)
    if eval is not None:
        _check_labels(net, eval[0], eval[1], "eval", classes)
        eval = (backend.to_device(eval[0], where), backend.to_device(eval[1], where))
    xp = array_namespace(x, t)

    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "test_acc": [], "seconds": [],
                                       "samples_per_s": []}
    rng = np.random.default_rng(seed)
    checking, net.last_layer.check_labels = net.last_layer.check_labels, False  # checked above
    try:
        for epoch in range(1, epochs + 1):
            order = rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)
            batches = backend.to_device(order, where)
            bar = ProgressBar(steps, desc=f"epoch {epoch}/{epochs}", unit=" steps",
                              enabled=progress)
            start = time.perf_counter()
            total = xp.zeros((), dtype=next(iter(net.params.values())).dtype, device=where)
            for step in range(steps):
                index = batches[step, ...]
                grads = net.gradient(xp.take(x, index, axis=0), xp.take(t, index, axis=0))
                optimizer.update(net.params, grads)
                total = total + net.last_layer.loss
                bar.update()
            loss = float(total) / steps  # the one read-back of the epoch
            seconds = time.perf_counter() - start
            bar.close()
            history["loss"].append(loss)
            history["seconds"].append(seconds)
            history["samples_per_s"].append(steps * batch_size / seconds)
            history["train_acc"].append(evaluate(net, x, t))
            if eval is not None:
                history["test_acc"].append(evaluate(net, *eval))
            if progress and log is not None:
                log(_epoch_line(epoch, epochs, history))
    finally:
        net.last_layer.check_labels = checking
    return history


def evaluate(net: Trainable, x: Any, t: Any, batch_size: int = 1000) -> float:
    """Accuracy of `net` on (x, t) (labels or one-hot rows), computed on the device in batches."""
    xp = array_namespace(x, t)
    correct = xp.zeros((), dtype=xp.int32, device=backend.device(x))  # int32: JAX has no int64 by default
    n = x.shape[0]
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)  # the standard leaves out-of-bounds stops unspecified
        predicted = xp.argmax(net.predict(x[start:stop, ...]), axis=1)
        labels = t[start:stop, ...]
        if labels.ndim != 1:
            labels = xp.argmax(labels, axis=1)
        correct = correct + xp.sum(xp.astype(predicted == labels, xp.int32))
    return int(correct) / n


def _check_labels(net: Trainable, x: Any, t: Any, name: str, classes: int | None = None) -> int:
    """Check the labels once, on the host, against the number of classes the net predicts."""
    if classes is None:
        classes = int(net.predict(backend.to_device(x[:1, ...], net.device)).shape[1])
    host = backend.to_cpu(t)
    if host.ndim == 1:
        if not np.issubdtype(host.dtype, np.integer):
            raise ValueError(f"{name} labels must be integer class indices, got dtype {host.dtype}.")
        if host.size and (host.min() < 0 or host.max() >= classes):
            bad = host.min() if host.min() < 0 else host.max()
            raise ValueError(f"{name} label {bad} is out of range: class labels must be in "
                             f"[0, {classes}) for a net with {classes} outputs.")
    elif host.shape[1:] != (classes,):
        raise ValueError(f"{name} one-hot labels have shape {host.shape}; the net has {classes} outputs.")
    return classes


def _epoch_line(epoch: int, epochs: int, history: dict[str, list[float]]) -> str:
    line = (f"epoch {epoch:>{len(str(epochs))}}/{epochs}  loss {history['loss'][-1]:.4f}  "
            f"train acc {history['train_acc'][-1]:.4f}")
    if history["test_acc"]:
        line += f"  test acc {history['test_acc'][-1]:.4f}"
    return line + (f"  {history['seconds'][-1]:.2f} s  "
                   f"{history['samples_per_s'][-1]:,.0f} samples/s")
