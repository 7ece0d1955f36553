"""The divergence guard: a run whose loss is NaN, infinite or absurd stops, keeping its history and
its last good weights.

An epoch's mean cross-entropy over 1000 ln(classes), a thousand times that of guessing, is a run
that no training brings back: `TrainingDivergedError` names the epoch, the learning rate and the
newest checkpoint to resume from, and carries the history of the epochs before it. The guard keeps a
copy of the net's state (and of the optimizer's, where it has `state_dict`) from before the first
epoch and after each good one (whose weights are all finite), on the net's device, and puts it back
before `TrainingDivergedError` is raised, whichever check found it (the epoch's loss, or a
checkpoint's within an epoch): the net and the optimizer then hold what they held at the end of the
last good epoch (before `fit`, when the first epoch diverges), so nothing is lost without a
checkpoint either.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np

from xbp.backend import array_namespace
from xbp.errors import TrainingDivergedError
from xbp.hooks import Hook, Run

__all__ = ["DivergenceGuard", "check_loss", "diverged", "first_not_finite"]

Snapshot = tuple["dict[str, Any] | None", "dict[str, Any] | None"]


class DivergenceGuard(Hook):
    """Checks each epoch's mean loss, before it is recorded (`check_loss`), and the net's weights after
    each epoch; whatever finds the run diverged (a checkpoint's checks too) puts the last good state
    back before it raises (`Run.put_back`)."""

    good: Snapshot | None = None
    held = "the start of fit"  # what `good` is, as the error says it

    def start(self, run: Run) -> None:
        self.run = run
        run.put_back = self.put_back

    def epoch_begins(self, epoch: int, order: np.ndarray) -> np.ndarray:
        if self.good is None:  # after every hook's start: a resume has put back its checkpoint by now
            self.good = _snapshot(self.run)
            if self.run.step:
                self.held = f"step {self.run.step} of epoch {self.run.epoch}, where fit resumed"
            elif self.run.epoch > 1:
                self.held = f"the end of epoch {self.run.epoch - 1}"
        return order

    def epoch_loss(self, epoch: int, loss: float) -> float:
        """The loss, and the weights the epoch leaves (its last updates can break them after a finite
        loss), before the epoch is recorded."""
        check_loss(self.run, epoch, loss)
        net = self.run.net
        broken = first_not_finite(net.state() if hasattr(net, "state") else None)
        if broken is not None:
            diverged(self.run, epoch, loss, f"{broken} is not finite after it")
        return loss

    def epoch_ends(self, epoch: int) -> None:
        self.good, self.held = _snapshot(self.run), f"the end of epoch {epoch}"

    def put_back(self) -> str:
        if self.good is None:  # diverged before the first epoch began: nothing has changed
            return "the start of fit"
        _restore(self.run, self.good)
        return self.held


def first_not_finite(state: dict[str, Any] | None) -> str | None:
    """The name of the first array of `state` holding NaN or an infinity, or None."""
    for key, value in (state or {}).items():
        xp = array_namespace(value)
        if xp.isdtype(value.dtype, "real floating") and not bool(xp.all(xp.isfinite(value))):
            return key
    return None


def _copy(value: Any) -> Any:
    return array_namespace(value).asarray(value, copy=True)


def _snapshot(run: Run) -> Snapshot:
    """Copies of the net's state() and of the optimizer's state_dict() arrays, where they live (None
    for a net or an optimizer of one's own that has no such method)."""
    net_state = ({key: _copy(value) for key, value in run.net.state().items()}
                 if hasattr(run.net, "state") and hasattr(run.net, "set_params") else None)
    if not hasattr(run.optimizer, "state_dict"):
        return net_state, None
    optimizer_state = run.optimizer.state_dict()
    slots = optimizer_state.get("slots", {})
    optimizer_state["slots"] = {name: None if slot is None else {key: _copy(v) for key, v in slot.items()}
                                for name, slot in slots.items()}
    return net_state, optimizer_state


def _restore(run: Run, good: Snapshot) -> None:
    net_state, optimizer_state = good
    if net_state is not None:
        run.net.set_params({key: _copy(value) for key, value in net_state.items()})
    if optimizer_state is not None:
        run.optimizer.load_state_dict(optimizer_state)  # takes copies of the slots (None: not begun)


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
    held = run.put_back()
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch}: {what or f'the mean loss is {loss}'} with lr {lr}. {where}, "
        "or start again with a smaller learning rate. The history of the epochs before it is on this "
        f"error's `history`; the net and the optimizer hold what they held at {held}.",
        epoch=epoch, loss=loss, history=run.history,
        checkpoint=None if run.checkpoint is None else str(run.checkpoint))
