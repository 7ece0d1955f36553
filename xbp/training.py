"""Training on whatever device the net lives on: mini-batch SGD the book's way, without host trips.

`fit` moves the data set to the net's device once. Each epoch it draws a permutation on the host
from `numpy.random.default_rng(seed)` (so CPU and GPU runs see the same batches), moves the batch
indices to the device in one piece, gathers each batch there, and adds each step's loss to a
device scalar that stays there: the epoch's per-step losses are stacked and read back once per
epoch, in one transfer. Labels are checked once, before training, instead of at every step.
Evaluation also runs on the device, in batches (`xbp.evaluation`).

What rides on fit is a hook (`xbp.hooks`): data parallelism (`comm=`), checkpoints and resume
(`checkpoint=`), and the divergence guard, always; fit calls them in that order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np

from xbp import backend
from xbp.backend import array_namespace, batch_taker, on_params_device, without_device_scope
from xbp.checkpoints import Checkpoints
from xbp.distributed.data_parallel import DataParallel
from xbp.divergence import DivergenceGuard
from xbp.evaluation import evaluate
from xbp.functions import validate_labels
from xbp.hooks import Hook, Run
from xbp.progress import ProgressBar
from xbp.resume import Checkpointing

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


@on_params_device  # on CuPy, the net's GPU is the current device while it trains
def fit(net: Trainable, optimizer: Optimizer, train: tuple[Any, Any], *, epochs: int,
        batch_size: int = 100, seed: int | None = 0, eval: tuple[Any, Any] | None = None,
        progress: bool = True, log: Callable[[str], None] | None = print,
        comm: Any = None, checkpoint: str | os.PathLike[str] | Checkpoints | None = None,
        checkpoint_every: int | None = None, resume: bool = False) -> dict[str, list[float]]:
    """Train `net` for `epochs` passes over `train` = (x, t); returns the per-epoch history.

    Each epoch visits every sample once in a random order (`len(x) // batch_size` steps; the last
    partial batch is dropped). The history holds, per epoch: `loss` (mean training loss over the
    epoch's steps), `train_acc` and `test_acc` (after the epoch; `test_acc` only with `eval`),
    `seconds` (training time, without evaluation) and `samples_per_s`; `iter_loss` holds the loss of
    every step, `steps` per epoch, read back once per epoch. With `progress`, a bar on
    stderr follows each epoch and `log` (default `print`) gets one line per epoch.

    With `comm` (from `xbp.distributed.init()`), this is one of comm.size processes training one net
    together: each takes its share of every global batch of `batch_size`, gradients are averaged
    over the processes, and the history holds the whole job's loss and accuracies (rank 0 logs).

    With `checkpoint` (a `.npz` path, a folder, or `xbp.checkpoints.Checkpoints`) the run is saved at
    the end of each epoch and every `checkpoint_every` steps; `resume=True` continues from the newest
    checkpoint there, exactly (see `xbp.resume`), and Ctrl-C saves one and raises
    `TrainingInterrupted`. An epoch loss that is NaN, infinite or over 1000 ln(classes) (a thousand
    times guessing's) raises `TrainingDivergedError`, with the history so far.
    """
    x, t = _arrays(train, "train")
    if eval is not None:
        eval = _arrays(eval, "eval")
    hooks: list[Hook] = []
    if comm is not None:  # first: the ranks check that they agree before anything else
        hooks.append(DataParallel(comm, net, optimizer, train, eval, epochs=epochs, batch_size=batch_size,
                                  seed=seed))
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
    _check_finite(x, "train")
    if eval is not None:
        _check_labels(net, eval[0], eval[1], "eval", classes)
        eval = (backend.to_device(eval[0], where), backend.to_device(eval[1], where))
        _check_finite(eval[0], "eval")
    xp = array_namespace(x, t)

    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "test_acc": [], "seconds": [],
                                       "samples_per_s": [], "iter_loss": []}
    run = Run(net, optimizer, rng=np.random.default_rng(seed), epochs=epochs, steps=steps, classes=classes,
              history=history, log=log)
    hooks.append(DivergenceGuard())
    if checkpoint is not None:
        hooks.append(Checkpointing(checkpoint, every=checkpoint_every, resume=resume, train=train,
                                   batch_size=batch_size, seed=seed))
    elif checkpoint_every is not None or resume:
        raise ValueError("checkpoint_every and resume need checkpoint=PATH_OR_DIR: where to save and "
                         "resume from.")
    every_step = [hook for hook in hooks if hook.every_step]  # the only hooks called after each step
    checking = net.last_layer.check_labels
    try:
        net.last_layer.check_labels = False  # checked above
        for hook in hooks:
            hook.start(run)
        progress = progress and run.leader
        first, carried, carried_seconds = run.step, run.losses, run.seconds  # > 0 in a resumed epoch
        for epoch in range(run.epoch, epochs + 1):
            order = run.rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)
            for hook in hooks:
                order = hook.epoch_begins(epoch, order)
            batches = backend.to_device(order, where)
            bar = ProgressBar(steps, desc=f"epoch {epoch}/{epochs}", unit=" steps",
                              enabled=progress)
            bar.update(first)
            start = time.perf_counter() - carried_seconds
            step_losses = []  # device scalars: no read-back, no sync, until the epoch ends
            take_x, take_t = batch_taker(x, batches.shape[1]), batch_taker(t, batches.shape[1])
            # fit runs inside the net's device scope (its decorator): the steps need not enter it again
            gradient, update = without_device_scope(net.gradient), without_device_scope(run.update)
            params, last_layer = net.params, net.last_layer
            for step in range(first, steps):
                index = batches[step, ...]
                update(params, gradient(take_x(index), take_t(index)))
                step_losses.append(last_layer.loss)
                bar.update()
                if every_step:
                    losses = partial(_losses_so_far, xp, carried, step_losses)
                    for hook in every_step:
                        hook.step_ended(epoch, step + 1, losses, time.perf_counter() - start)
            iter_loss = np.concatenate([np.asarray(carried, dtype=np.float64),
                                        _read_back(xp, step_losses) if step_losses else np.zeros(0)])
            loss = float(np.sum(iter_loss, dtype=np.float64)) / steps  # the one read-back of the epoch
            bar.close()
            for hook in hooks:
                loss = hook.epoch_loss(epoch, loss)
            seconds = time.perf_counter() - start
            history["loss"].append(loss)
            history["iter_loss"].extend(iter_loss.tolist())
            history["seconds"].append(seconds)
            history["samples_per_s"].append(steps * batch_size / seconds)
            history["train_acc"].append(run.score(net, x, t))
            if eval is not None:
                history["test_acc"].append(run.score(net, *eval))
            if progress and log is not None:
                log(_epoch_line(epoch, epochs, history))
            for hook in hooks:
                hook.epoch_ends(epoch)
            first, carried, carried_seconds = 0, [], 0.0
    finally:
        net.last_layer.check_labels = checking
        for hook in hooks:
            hook.close()
    return history


def _losses_so_far(xp: Any, carried: list[float], step_losses: list[Any]) -> list[float]:
    """The epoch's losses until now: those carried over a resume, then this run's, read back."""
    return [*carried, *_read_back(xp, step_losses).tolist()]


def _read_back(xp: Any, scalars: list[Any]) -> np.ndarray:
    """The device scalars as one host float64 vector: one stack on the device, one transfer."""
    # stack queues without a host sync on CuPy (docs/notes/cuda.md, "stack"): to_cpu is the one sync
    return np.asarray(backend.to_cpu(xp.stack(scalars)), dtype=np.float64)


def _check_labels(net: Trainable, x: Any, t: Any, name: str, classes: int | None = None) -> int:
    """Check the labels once, on the host, against the number of classes the net predicts."""
    if classes is None:
        classes = int(net.predict(backend.to_device(x[:1, ...], net.device)).shape[1])
    host = backend.to_cpu(t)
    validate_labels(array_namespace(host), host, classes, name=name)
    return classes


def _arrays(data: Any, name: str) -> tuple[Any, Any]:
    """(x, t) of `data`, which must be a pair of arrays (numpy, CuPy, torch, ...)."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (x, t) of arrays, got {type(data).__name__}.")
    for part, value in zip(("x", "t"), data, strict=True):
        if not backend.is_array(value):
            raise TypeError(f"{name}'s {part} must be an array, got {type(value).__name__}: convert it with "
                            f"np.asarray({part}) (or xbp.asarray) first.")
    return data[0], data[1]


def _check_finite(x: Any, name: str) -> None:
    """Refuse data holding NaN or an infinity before the first step, naming the first such row (one
    reduction on the device, and one number read back, when the data is clean)."""
    xp = array_namespace(x)
    finite = xp.all(xp.isfinite(xp.reshape(x, (x.shape[0], -1))), axis=1)
    if bool(xp.all(finite)):
        return
    rows = np.flatnonzero(~np.asarray(backend.to_cpu(finite)))
    values = np.asarray(backend.to_cpu(x[int(rows[0]), ...])).ravel()
    bad = values[~np.isfinite(values)][0]
    raise ValueError(f"{name} data holds {len(rows)} rows with NaN or infinite values, the first row "
                     f"{int(rows[0])} (a {bad}): drop or repair those rows before fit; nothing was "
                     "trained.")


def _epoch_line(epoch: int, epochs: int, history: dict[str, list[float]]) -> str:
    line = (f"epoch {epoch:>{len(str(epochs))}}/{epochs}  loss {history['loss'][-1]:.4f}  "
            f"train acc {history['train_acc'][-1]:.4f}")
    if history["test_acc"]:
        line += f"  test acc {history['test_acc'][-1]:.4f}"
    return line + (f"  {history['seconds'][-1]:.2f} s  "
                   f"{history['samples_per_s'][-1]:,.0f} samples/s")
