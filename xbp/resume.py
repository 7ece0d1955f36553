"""Checkpoints that let training survive an interruption and resume exactly where it stopped.

A checkpoint is one `.npz` file. Its arrays are the net's state (parameters and layer buffers), the
optimizer's slots and the CuPy generators' states, copied to the host; its member `__meta__` is a
JSON document (as bytes) with everything else: the position reached (the epoch in progress and the
steps done in it), the data-order generator's state before that epoch's permutation, the partial
epoch's loss sum and seconds, the history so far, the Dropout generators' states, the optimizer's
counters, the run's settings, and the SHA-256 of every array. No pickles.

A file is written to a temporary name beside its target, fsynced and renamed into place, so a kill at
any instant leaves the previous checkpoint whole; the newest `keep` are kept. Loading reads and checks
the whole file, then the settings, before it changes anything: a truncated, corrupt or foreign file,
or a run with other settings, is refused with the reason, never half-loaded.

`fit(..., checkpoint=PATH_OR_DIR, checkpoint_every=STEPS, resume=True)` drives it through `Session`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xbp import backend
from xbp.backend import DeviceRNG, array_namespace
from xbp.errors import CheckpointError, TrainingDivergedError, TrainingInterrupted
from xbp.params_io import dtype_name, read_npz, write_npz

__all__ = ["Checkpoints", "Session", "read_checkpoint", "write_checkpoint"]

FORMAT, VERSION = "xbp-checkpoint", 1
_META = "__meta__"
_NAME = re.compile(r"step-(\d+)\.npz")


# ---------------------------------------------------------------- one file

def write_checkpoint(path: str | os.PathLike[str], arrays: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write `arrays` (name -> array of any backend) and the JSON-able `meta` to the `.npz` file `path`:
    a temporary file beside it, fsynced, renamed over it, and the folder fsynced."""
    target = Path(path)
    host: dict[str, Any] = {name: np.ascontiguousarray(backend.to_cpu(value))
                            for name, value in arrays.items()}
    meta = {**meta, "format": FORMAT, "version": VERSION,
            "arrays": {name: _digest(value) for name, value in host.items()}}
    host[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    write_npz(target, host)
    _fsync_folder(target.parent)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of the checkpoint `path`, every array checked against its SHA-256; raises
    `CheckpointError` for a file that is not a whole xbp checkpoint."""
    host = read_npz(path, "checkpoint", "Resume from an older one, or start over.")
    if _META not in host:
        raise CheckpointError(f"{path}: an .npz without {_META}, not an xbp checkpoint (files of "
                              "xbp.save_params load with xbp.load_params).")
    try:
        meta = json.loads(host.pop(_META).tobytes())
    except ValueError as exc:  # JSON or UTF-8 that does not decode
        raise CheckpointError(f"{path}: its {_META} is damaged ({type(exc).__name__}: {exc}). Resume from "
                              "an older one, or start over.") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: not an xbp checkpoint of version {VERSION}.")
    if set(host) != set(meta["arrays"]):
        raise CheckpointError(f"{path}: holds the arrays {sorted(host)} but lists {sorted(meta['arrays'])}: "
                              "the file is damaged. Resume from an older one, or start over.")
    for name, value in host.items():
        if _digest(value) != meta["arrays"][name]:
            raise CheckpointError(f"{path}: array {name!r} does not match its SHA-256 (the file is damaged). "
                                  "Resume from an older one, or start over.")
    return host, meta


def _digest(value: np.ndarray) -> dict[str, Any]:
    return {"shape": list(value.shape), "dtype": value.dtype.str, "sha256": _sha256(value)}


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); a system that cannot open folders skips it."""
    with contextlib.suppress(OSError, AttributeError):
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


# ---------------------------------------------------------------- trees of arrays as JSON + arrays

def _pack(tree: Any, name: str, arrays: dict[str, Any]) -> Any:
    """`tree` as JSON, each array in it moved to `arrays` under its path and replaced by {'array': path}."""
    if isinstance(tree, dict):
        return {str(key): _pack(value, f"{name}/{key}", arrays) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_pack(value, f"{name}/{index}", arrays) for index, value in enumerate(tree)]
    if backend.is_array(tree) or isinstance(tree, np.ndarray):
        arrays[name] = tree
        return {"array": name}
    return tree


def _unpack(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"array"}:
            return arrays[tree["array"]]
        return {key: _unpack(value, arrays) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_unpack(value, arrays) for value in tree]
    return tree


# ---------------------------------------------------------------- a run's settings

def run_settings(net: Any, optimizer: Any, x: Any, t: Any, *, batch_size: int, seed: int | None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a resumed run must share with the run that saved: the net (class, layers, state shapes,
    dtype), the optimizer and its hyperparameters, batch size, seed, and the training data (shape,
    dtype, a SHA-256 of the labels and of up to 1,000 evenly spaced samples), plus `extra`."""
    first = next(iter(net.params.values()))
    layers = {name: {"type": type(layer).__name__,
                     **{attr: getattr(layer, attr) for attr in ("dropout_ratio", "momentum", "eps")
                        if isinstance(getattr(layer, attr, None), (int, float))}}
              for name, layer in net.layers.items()}
    stride = max(1, x.shape[0] // 1000)
    labels, sample = backend.to_cpu(t), backend.to_cpu(x[::stride, ...])
    return {**(extra or {}),
            "net": {"class": type(net).__name__, "layers": layers, "dtype": dtype_name(first.dtype),
                    "weight_decay_lambda": float(getattr(net, "weight_decay_lambda", 0.0)),
                    "state": {key: list(value.shape) for key, value in net.state().items()}},
            "optimizer": {"name": type(optimizer).__name__, **optimizer.state_dict()["hyperparameters"]},
            "batch_size": batch_size, "seed": seed,
            "data": {"samples": int(x.shape[0]), "sample_shape": list(x.shape[1:]),
                     "dtype": dtype_name(x.dtype), "labels_sha256": _sha256(labels),
                     "samples_sha256": _sha256(sample)}}


def _sha256(value: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(value).data).hexdigest()  # the buffer, no copy


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    old, new = _flat(saved), _flat(current)
    return [f"{key}: {old.get(key, '(none)')!r} in the checkpoint, {new.get(key, '(none)')!r} now"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


# ---------------------------------------------------------------- where checkpoints live

class Checkpoints:
    """A checkpoint file (`path` ending in `.npz`, overwritten each time) or a folder of them
    (`step-<global step>.npz`, the newest `keep` kept); `settings` adds entries (such as the data set's
    name) that a resumed run must share."""

    def __init__(self, path: str | os.PathLike[str], *, keep: int = 1,
                 settings: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.single = self.path.suffix == ".npz"
        if keep < 1 or (self.single and keep != 1):
            raise ValueError(f"keep must be 1 for a single checkpoint file and >= 1 for a folder, got "
                             f"{keep}; give a folder to keep several.")
        self.keep, self.settings = keep, dict(settings or {})

    def prepare(self) -> None:
        """Make the folder, and remove temporary files that a killed save left behind."""
        folder = self.path.parent if self.single else self.path
        if not self.single and self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path} is a file: give a folder for checkpoints, or a path "
                                  "ending in .npz for a single checkpoint file.")
        if self.single and not folder.is_dir():
            raise CheckpointError(f"the folder of the checkpoint {self.path} does not exist; create "
                                  "it first.")
        folder.mkdir(parents=True, exist_ok=True)
        pattern = f".{self.path.name}.*.tmp" if self.single else ".step-*.npz.*.tmp"
        for stale in folder.glob(pattern):
            stale.unlink(missing_ok=True)

    def existing(self) -> list[Path]:
        """The checkpoints present, oldest first."""
        if self.single:
            return [self.path] if self.path.exists() else []
        if not self.path.is_dir():
            return []
        found = [(int(match.group(1)), item) for item in self.path.iterdir()
                 if (match := _NAME.fullmatch(item.name))]
        return [item for _, item in sorted(found)]

    def target(self, global_step: int) -> Path:
        return self.path if self.single else self.path / f"step-{global_step:010d}.npz"

    def prune(self) -> None:
        for old in self.existing()[: -self.keep]:
            old.unlink(missing_ok=True)


# ---------------------------------------------------------------- the hook in fit

class Session:
    """What `fit` asks about checkpoints: where to start, when to save, Ctrl-C, divergence.

    Positions are (epoch, step): the epoch in progress (from 1) and the steps of it already done. With
    `checkpoint=None` it only guards against divergence and keeps Ctrl-C as it is.
    """

    def __init__(self, checkpoint: str | os.PathLike[str] | Checkpoints | None, *, every: int | None,
                 resume: bool, net: Any, optimizer: Any, rng: np.random.Generator, epochs: int, steps: int,
                 classes: int, writer: bool = True,
                 history: dict[str, list[float]], settings: Callable[[dict[str, Any]], dict[str, Any]],
                 log: Callable[[str], None] | None) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"checkpoint_every must be a positive number of steps (or None: at the end "
                             f"of each epoch), got {every!r}.")
        if checkpoint is None and (every is not None or resume):
            raise ValueError("checkpoint_every and resume need checkpoint=PATH_OR_DIR: where to save "
                             "and resume from.")
        self.where = checkpoint if checkpoint is None or isinstance(checkpoint, Checkpoints) \
            else Checkpoints(checkpoint)
        self.every, self.net, self.optimizer, self.rng = every, net, optimizer, rng
        self.steps, self.classes, self.history, self.log = steps, classes, history, log
        self.writer = writer  # False: resume from the checkpoints but never write them
        self.epoch, self.step, self.seconds = 1, 0, 0.0
        self.losses: list[float] = []
        self.last: Path | None = None
        self.interrupted = False
        self._previous_handler: Any = None
        self._epoch_rng: dict[str, Any] = dict(rng.bit_generator.state)
        if self.where is None:
            return
        if not (hasattr(optimizer, "state_dict") and hasattr(optimizer, "load_state_dict")):
            raise TypeError(f"checkpoints need the optimizer's state: give {type(optimizer).__name__} "
                            "state_dict() and load_state_dict() (as xbp.optimizers' optimizers have).")
        self.settings = settings(self.where.settings)
        self.where.prepare()
        found = self.where.existing()
        if found and not resume:
            raise CheckpointError(f"{self.where.path} already holds a checkpoint ({found[-1].name}): pass "
                                  "resume=True (--resume) to continue that run, or give another place, or "
                                  "delete it to start over.")
        if resume and not found:
            self._say(f"no checkpoint in {self.where.path} yet: starting from epoch 1")
        elif resume:
            self._restore(found[-1])
            if self.epoch > epochs:
                self._say(f"the checkpoint has finished {self.epoch - 1} epochs already: nothing to "
                          f"train for epochs={epochs}")
        self._catch_interrupts()  # the last thing: fit's `finally` calls close()

    # -- starting

    def _restore(self, path: Path) -> None:
        arrays, meta = read_checkpoint(path)
        saved = meta["settings"]
        lr_then, lr_now = saved.get("optimizer", {}).get("lr"), self.settings["optimizer"].get("lr")
        differences = _differences({**saved, "optimizer": {**saved["optimizer"], "lr": None}},
                                   {**self.settings, "optimizer": {**self.settings["optimizer"], "lr": None}})
        if differences:
            raise CheckpointError(f"{path} was saved by a run with other settings; resume with the same "
                                  "settings, or start over elsewhere. Differences: " + "; ".join(differences))
        if meta["steps_per_epoch"] != self.steps:
            raise CheckpointError(f"{path}: {meta['steps_per_epoch']} steps per epoch then, "
                                  f"{self.steps} now.")
        state = _unpack(meta["state"], arrays)
        net, where = self.net, self.net.device
        optimizer_state = state["optimizer"]
        for slot, values in optimizer_state.get("slots", {}).items():
            if values is not None:
                if set(values) != set(net.params):
                    raise CheckpointError(f"{path}: the optimizer slot {slot!r} has {sorted(values)}, the "
                                          f"net has {sorted(net.params)}.")
                optimizer_state["slots"][slot] = {
                    key: array_namespace(net.params[key]).astype(
                        backend.to_device(value, where), net.params[key].dtype)
                    for key, value in values.items()}
        # every check done: now change the net, the optimizer and the generators
        net.set_params(state["net"])
        self.optimizer.load_state_dict(optimizer_state)
        like = next(iter(net.params.values()))
        for name, rng_state in state["device_rngs"].items():
            if not _device_rngs(net)[name].load_state_dict(rng_state, like=like):
                self._say(f"{name}: its mask stream was saved on another kind of generator (CuPy's or "
                          "numpy's); it restarts from its seed here")
        self.rng.bit_generator.state = meta["rng"]
        self._epoch_rng = meta["rng"]
        for key, values in meta["history"].items():
            self.history.setdefault(key, [])[:] = values
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.losses, self.seconds = meta["losses"], meta["seconds"]
        self.last = path
        self._say(f"resumed from {path}: epoch {self.epoch}, step {self.step} of {self.steps}")
        if lr_then != lr_now:
            self._say(f"the learning rate was {lr_then}, it is {lr_now} now: training continues with "
                      f"{lr_now} (no longer the same run as an uninterrupted one)")

    # -- during the run

    def _catch_interrupts(self) -> None:
        """While checkpointing, Ctrl-C (SIGINT) asks for a stop after the current step (or epoch's
        evaluation) instead of raising inside it; a second Ctrl-C raises at once."""
        def handler(signum: int, frame: Any) -> None:
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = True

        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, handler)

    def close(self) -> None:
        """Give Ctrl-C back its previous handler."""
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def epoch_begins(self, epoch: int) -> int:
        """Remember the data-order generator's state before `epoch`'s permutation; the first step to run."""
        self._epoch_rng = dict(self.rng.bit_generator.state)
        return self.step if epoch == self.epoch else 0

    def carried(self, epoch: int) -> tuple[list[float], float]:
        """(losses, seconds) of the steps of `epoch` done before the resume, as `after_step` got them."""
        return (self.losses, self.seconds) if epoch == self.epoch else ([], 0.0)

    def after_step(self, epoch: int, done: int, losses: Callable[[], list[float]], seconds: float) -> None:
        """Save after `done` steps of `epoch` when it is time (every `every` steps) or on Ctrl-C;
        `losses()` reads back the epoch's losses so far (host floats that sum to their total), only
        then."""
        if self.where is None:
            return
        global_step = (epoch - 1) * self.steps + done
        if self.interrupted or (self.every is not None and global_step % self.every == 0
                                and done < self.steps):
            done_losses = [float(value) for value in losses()]
            self.check(epoch, math.fsum(done_losses) / done)
            self._save(epoch, done, done_losses, seconds, self._epoch_rng)
            if self.interrupted:
                self._stop(epoch, done)

    def after_epoch(self, epoch: int) -> None:
        """Save at the end of `epoch` (as the start of the next), then stop there if Ctrl-C came."""
        if self.where is None:
            return
        self._save(epoch + 1, 0, [], 0.0, dict(self.rng.bit_generator.state))
        if self.interrupted:
            self._stop(epoch + 1, 0)

    def check(self, epoch: int, loss: float) -> None:
        """Raise `TrainingDivergedError` if the mean cross-entropy `loss` is NaN, infinite, or over a
        thousand times that of guessing (ln(classes) per sample): no training comes back from there."""
        guessing = math.log(max(self.classes, 2))
        if not math.isfinite(loss):
            self.diverged(epoch, loss)
        if loss > 1000 * guessing:
            self.diverged(epoch, loss, f"the mean loss is {loss:.6g}, over 1000 times that of guessing "
                          f"({guessing:.3g})")

    def diverged(self, epoch: int, loss: float, what: str = "") -> None:
        """Raise `TrainingDivergedError` for a diverged mean loss (or a parameter) in `epoch`."""
        lr = getattr(self.optimizer, "lr", None)
        where = (f"The last good checkpoint is {self.last}: resume from it with a smaller learning rate"
                 if self.last else "No checkpoint was saved before it (pass checkpoint= to keep one)")
        raise TrainingDivergedError(
            f"training diverged in epoch {epoch}: {what or f'the mean loss is {loss}'} with lr {lr}. "
            f"{where}, or "
            "start again with a smaller learning rate. The history of the epochs before it is on this "
            "error's `history`.", epoch=epoch, loss=loss, history=self.history,
            checkpoint=None if self.last is None else str(self.last))

    # -- saving

    def _save(self, epoch: int, step: int, losses: list[float], seconds: float,
              rng_state: dict[str, Any]) -> None:
        if not self.writer or self.where is None:
            return
        net, arrays = self.net, dict[str, Any]()
        state = _pack({"net": net.state(),
                       "optimizer": self.optimizer.state_dict(),
                       "device_rngs": {name: rng.state_dict() for name, rng in _device_rngs(net).items()}},
                      "state", arrays)
        arrays = {name: backend.to_cpu(value) for name, value in arrays.items()}  # one copy to the host
        for name, value in arrays.items():
            if name.startswith("state/net/") and not np.all(np.isfinite(value)):
                self.diverged(epoch, math.fsum(losses) / max(step, 1),
                              f"{name[len('state/net/'):]} is not finite")
        target = self.where.target((epoch - 1) * self.steps + step)
        write_checkpoint(target, arrays, {
            "epoch": epoch, "step": step, "steps_per_epoch": self.steps, "losses": losses,
            "seconds": seconds, "rng": rng_state, "history": self.history, "state": state,
            "settings": self.settings})
        self.last = target
        self.where.prune()

    def _stop(self, epoch: int, step: int) -> None:
        raise TrainingInterrupted(
            f"interrupted: saved the checkpoint {self.last} (epoch {epoch}, step {step} of {self.steps} "
            "done); run again with resume=True (examples/mnist.py: --resume) to continue.",
            epoch=epoch, step=step, history=self.history, checkpoint=str(self.last))

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)


def _device_rngs(net: Any) -> dict[str, DeviceRNG]:
    return {name: layer.rng for name, layer in net.layers.items()
            if isinstance(getattr(layer, "rng", None), DeviceRNG)}
