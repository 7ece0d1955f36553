"""Checkpointing a run so that it survives an interruption and resumes exactly where it stopped.

`fit(..., checkpoint=PATH_OR_DIR, checkpoint_every=STEPS, resume=True)` adds the hook
`Checkpointing`: it saves a checkpoint (`xbp.checkpoints`) at the end of each epoch, every `every`
steps and on Ctrl-C, which then stops the run with `TrainingInterrupted`; with `resume` it first
restores the newest checkpoint there: the net, the optimizer, the generators, the history and the
position (the epoch in progress and the steps done in it). Before it changes anything it checks the
whole file, then the settings: a run with other settings is refused, naming each difference.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xbp import backend
from xbp.backend import DeviceRNG, array_namespace
from xbp.checkpoints import (
    Checkpoints,
    differences,
    pack,
    read_checkpoint,
    run_settings,
    unpack,
    write_checkpoint,
)
from xbp.divergence import check_loss, diverged, first_not_finite
from xbp.errors import CheckpointError, TrainingInterrupted
from xbp.hooks import Hook, Run

__all__ = ["Checkpointing"]


class Checkpointing(Hook):
    """Where to start, when to save, and Ctrl-C, for `fit`.

    Positions are (epoch, step): the epoch in progress (from 1) and the steps of it already done.
    `train`, `batch_size` and `seed` go into the settings that a resumed run must share.
    """

    every_step = True  # Ctrl-C and `every` are looked at after each step

    def __init__(self, checkpoint: str | os.PathLike[str] | Checkpoints, *, every: int | None, resume: bool,
                 train: tuple[Any, Any], batch_size: int, seed: int | None) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"checkpoint_every must be a positive number of steps (or None: at the end "
                             f"of each epoch), got {every!r}.")
        self.where = checkpoint if isinstance(checkpoint, Checkpoints) else Checkpoints(checkpoint)
        self.every, self.resume = every, resume
        self.train, self.batch_size, self.seed = train, batch_size, seed
        self.interrupted = False
        self._previous_handler: Any = None

    # -- starting

    def start(self, run: Run) -> None:
        """Check the optimizer and the folder, restore the newest checkpoint if resuming, catch Ctrl-C."""
        self.run = run
        optimizer = run.optimizer
        if not (hasattr(optimizer, "state_dict") and hasattr(optimizer, "load_state_dict")):
            raise TypeError(f"checkpoints need the optimizer's state: give {type(optimizer).__name__} "
                            "state_dict() and load_state_dict() (as xbp.optimizers' optimizers have).")
        x, t = self.train
        self.settings = run_settings(run.net, optimizer, x, t, batch_size=self.batch_size, seed=self.seed,
                                     extra=self.where.settings)
        self.where.prepare()
        found = self.where.existing()
        if found and not self.resume:
            raise CheckpointError(f"{self.where.path} already holds a checkpoint ({found[-1].name}): pass "
                                  "resume=True (--resume) to continue that run, or give another place, or "
                                  "delete it to start over.")
        if self.resume and not found:
            run.say(f"no checkpoint in {self.where.path} yet: starting from epoch 1")
        elif self.resume:
            self._restore(*self._newest_whole(found))
            if run.epoch > run.epochs:
                run.say(f"the checkpoint has finished {run.epoch - 1} epochs already: nothing to "
                        f"train for epochs={run.epochs}")
        self._epoch_rng: dict[str, Any] = dict(run.rng.bit_generator.state)  # before this epoch's order
        self._catch_interrupts()  # the last thing: fit calls close() however it ends

    def _newest_whole(self, found: list[Path]) -> tuple[Path, dict[str, Any], dict[str, Any]]:
        """The newest checkpoint that reads whole, and its contents; a damaged newer one is passed
        over, saying so (with keep=N the older ones are there for this). All damaged: the newest's
        error, naming how many were tried."""
        damaged: list[str] = []
        for path in reversed(found):
            try:
                arrays, meta = read_checkpoint(path)
            except CheckpointError as exc:
                damaged.append(str(exc))
                continue
            for reason in damaged:
                self.run.say(f"passed over a damaged checkpoint: {reason}")
            if damaged:
                self.run.say(f"resuming from {path}, the newest whole checkpoint")
            return path, arrays, meta
        more = f" (and the {len(found) - 1} older ones are damaged too)" if len(found) > 1 else ""
        raise CheckpointError(damaged[0] + more)

    def _restore(self, path: Path, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        run = self.run
        saved = meta["settings"]
        lr_then, lr_now = saved.get("optimizer", {}).get("lr"), self.settings["optimizer"].get("lr")
        found = differences({**saved, "optimizer": {**saved["optimizer"], "lr": None}},
                            {**self.settings, "optimizer": {**self.settings["optimizer"], "lr": None}})
        if found:
            raise CheckpointError(f"{path} was saved by a run with other settings; resume with the same "
                                  "settings, or start over elsewhere. Differences: " + "; ".join(found))
        if meta["steps_per_epoch"] != run.steps:
            raise CheckpointError(f"{path}: {meta['steps_per_epoch']} steps per epoch then, "
                                  f"{run.steps} now.")
        state = unpack(meta["state"], arrays)
        net, where = run.net, run.net.device
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
        run.optimizer.load_state_dict(optimizer_state)
        like = next(iter(net.params.values()))
        for name, rng_state in state["device_rngs"].items():
            if not _device_rngs(net)[name].load_state_dict(rng_state, like=like):
                run.say(f"{name}: its mask stream was saved on another kind of generator (CuPy's or "
                        "numpy's); it restarts from its seed here")
        run.rng.bit_generator.state = meta["rng"]
        for key, values in meta["history"].items():
            run.history.setdefault(key, [])[:] = values
        run.epoch, run.step = meta["epoch"], meta["step"]
        run.losses, run.seconds = meta["losses"], meta["seconds"]
        run.checkpoint = path
        run.say(f"resumed from {path}: epoch {run.epoch}, step {run.step} of {run.steps}")
        if lr_then != lr_now:
            run.say(f"the learning rate was {lr_then}, it is {lr_now} now: training continues with "
                    f"{lr_now} (no longer the same run as an uninterrupted one)")

    def _catch_interrupts(self) -> None:
        """Ctrl-C (SIGINT) asks for a stop after the current step (or epoch's evaluation) instead of
        raising inside it; a second Ctrl-C raises at once."""
        def handler(signum: int, frame: Any) -> None:
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = True

        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, handler)

    # -- during the run

    def step_ended(self, epoch: int, done: int, losses: Callable[[], list[float]], seconds: float) -> None:
        """Save after `done` steps of `epoch` when it is time (every `every` steps) or on Ctrl-C."""
        global_step = (epoch - 1) * self.run.steps + done
        if self.interrupted or (self.every is not None and global_step % self.every == 0
                                and done < self.run.steps):
            done_losses = [float(value) for value in losses()]
            check_loss(self.run, epoch, math.fsum(done_losses) / done)
            self._save(epoch, done, done_losses, seconds, self._epoch_rng)
            if self.interrupted:
                self._stop(epoch, done)

    def epoch_ends(self, epoch: int) -> None:
        """Save at the end of `epoch` (as the start of the next), then stop there if Ctrl-C came."""
        self._epoch_rng = dict(self.run.rng.bit_generator.state)  # nothing else draws from it
        self._save(epoch + 1, 0, [], 0.0, self._epoch_rng)
        if self.interrupted:
            self._stop(epoch + 1, 0)

    def close(self) -> None:
        """Give Ctrl-C back its previous handler."""
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    # -- saving

    def _save(self, epoch: int, step: int, losses: list[float], seconds: float,
              rng_state: dict[str, Any]) -> None:
        run = self.run
        if not run.leader:
            return
        net, arrays = run.net, dict[str, Any]()
        broken = first_not_finite(net.state())
        if broken is not None:
            diverged(run, epoch, math.fsum(losses) / max(step, 1), f"{broken} is not finite")
        state = pack({"net": net.state(),
                      "optimizer": run.optimizer.state_dict(),
                      "device_rngs": {name: rng.state_dict() for name, rng in _device_rngs(net).items()}},
                     "state", arrays)
        arrays = {name: backend.to_cpu(value) for name, value in arrays.items()}  # one copy to the host
        target = self.where.target((epoch - 1) * run.steps + step)
        write_checkpoint(target, arrays, {
            "epoch": epoch, "step": step, "steps_per_epoch": run.steps, "losses": losses,
            "seconds": seconds, "rng": rng_state, "history": run.history, "state": state,
            "settings": self.settings})
        run.checkpoint = target
        self.where.prune()

    def _stop(self, epoch: int, step: int) -> None:
        raise TrainingInterrupted(
            f"interrupted: saved the checkpoint {self.run.checkpoint} (epoch {epoch}, step {step} of "
            f"{self.run.steps} done); run again with resume=True (examples/mnist.py: --resume) to continue.",
            epoch=epoch, step=step, history=self.run.history, checkpoint=str(self.run.checkpoint))


def _device_rngs(net: Any) -> dict[str, DeviceRNG]:
    return {name: layer.rng for name, layer in net.layers.items()
            if isinstance(getattr(layer, "rng", None), DeviceRNG)}
