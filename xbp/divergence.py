"""The divergence guard: a run whose loss is NaN, infinite or absurd stops, keeping its history.

An epoch's mean cross-entropy over 1000 ln(classes), a thousand times that of guessing, is a run
that no training brings back: `TrainingDivergedError` names the epoch, the learning rate and the
newest checkpoint to resume from, and carries the history of the epochs before it.
"""

from __future__ import annotations

import math
from typing import NoReturn

from xbp.errors import TrainingDivergedError
from xbp.hooks import Hook, Run

__all__ = ["DivergenceGuard", "check_loss", "diverged"]


class DivergenceGuard(Hook):
    """Checks each epoch's mean loss, before it is recorded (`check_loss`)."""

    def start(self, run: Run) -> None:
        self.run = run

    def epoch_loss(self, epoch: int, loss: float) -> float:
        check_loss(self.run, epoch, loss)
        return loss


def check_loss(run: Run, epoch: int, loss: float) -> None:
    """Raise `TrainingDivergedError` if the mean cross-entropy `loss` is NaN, infinite, or over a
    thousand times that of guessing (ln(classes) per sample)."""
    guessing = math.log(max(run.classes, 2))
    if not math.isfinite(loss):
        diverged(run, epoch, loss)
    if loss > 1000 * guessing:
        diverged(run, epoch, loss, f"the mean loss is {loss:.6g}, over 1000 times that of guessing "
                 f"({guessing:.3g})")


def diverged(run: Run, epoch: int, loss: float, what: str = "") -> NoReturn:
    """Raise `TrainingDivergedError` for a diverged mean loss (or `what` else diverged) in `epoch`."""
    lr = getattr(run.optimizer, "lr", None)
    where = (f"The last good checkpoint is {run.checkpoint}: resume from it with a smaller learning rate"
             if run.checkpoint else "No checkpoint was saved before it (pass checkpoint= to keep one)")
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch}: {what or f'the mean loss is {loss}'} with lr {lr}. {where}, "
        "or start again with a smaller learning rate. The history of the epochs before it is on this "
        "error's `history`.", epoch=epoch, loss=loss, history=run.history,
        checkpoint=None if run.checkpoint is None else str(run.checkpoint))
