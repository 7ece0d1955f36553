"""The seams of `fit`, the one training loop: what rides on it is a `Hook`, and what the hooks share
with it is the `Run`.

Checkpoints and resume (`xbp.resume.Checkpointing`), data parallelism
(`xbp.distributed.DataParallel`) and the divergence guard (`xbp.divergence.DivergenceGuard`) are
hooks. `fit` builds those it was asked for and calls each in that order:

    start(run)                                once, before the first epoch: a hook may change the run
    epoch_begins(epoch, order) -> order       the epoch's batch indices, as this process trains on them
    step_ended(epoch, done, losses, seconds)  after each step, only for hooks with `every_step`
    epoch_loss(epoch, loss) -> loss           the epoch's mean loss, before it is recorded
    epoch_ends(epoch)                         after the epoch is in the history
    close()                                   always, when fit returns or raises

A hook imports this module and whatever it needs, never `xbp.training`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xbp.evaluation import evaluate

__all__ = ["Hook", "Run"]


@dataclass(eq=False)
class Run:
    """What `fit` and its hooks share: the run's parts, and where it starts."""

    net: Any
    optimizer: Any  # the caller's: its class, state and learning rate are the run's
    rng: np.random.Generator  # draws each epoch's order of the samples
    epochs: int
    steps: int  # per epoch
    classes: int
    history: dict[str, list[float]]  # what fit returns: a resume fills in the epochs before it
    log: Callable[[str], None] | None
    update: Callable[..., None] = field(init=False)  # a step's: optimizer.update, or a hook's
    score: Callable[..., float] = evaluate  # the accuracy of (net, x, t)
    leader: bool = True  # this process shows progress, logs the epochs and writes checkpoints
    epoch: int = 1  # the epoch to start in
    step: int = 0  # the steps of it done before (by a run that is resumed)
    losses: list[float] = field(default_factory=list)  # their losses
    seconds: float = 0.0  # their training time
    checkpoint: Path | None = None  # the newest checkpoint saved or resumed from
    # what a diverging run does before it raises: the guard puts the last good state back and says
    # which it is ("the end of epoch 2"); without a guard, nothing is put back
    put_back: Callable[[], str] = lambda: "the step where training diverged"

    def __post_init__(self) -> None:
        self.update = self.optimizer.update

    def say(self, line: str) -> None:
        """Log `line`, where the run logs."""
        if self.log is not None:
            self.log(line)


class Hook:
    """Something that rides on `fit`; each method does nothing unless a hook overrides it."""

    every_step = False  # True: fit calls step_ended after every step (it skips the call otherwise)

    def start(self, run: Run) -> None:
        """Before the first epoch, after every hook is made."""

    def epoch_begins(self, epoch: int, order: np.ndarray) -> np.ndarray:
        """`order`: the (steps, batch_size) sample indices every process drew alike for `epoch`."""
        return order

    def step_ended(self, epoch: int, done: int, losses: Callable[[], list[float]], seconds: float) -> None:
        """After `done` steps of `epoch` (`seconds` of training in it); `losses()` reads back the
        losses of those steps (host floats), only when called."""

    def epoch_loss(self, epoch: int, loss: float) -> float:
        """The mean training loss of `epoch` as the run knows it; may raise to stop the run."""
        return loss

    def epoch_ends(self, epoch: int) -> None:
        """After `epoch`'s loss, accuracies and seconds are in the history (and logged)."""

    def close(self) -> None:
        """When fit returns or raises, even before `start`."""
