"""Accuracy on the device: the net predicts in batches and the correct answers are counted there.

`evaluate` is what `fit` scores each epoch with (and what data parallelism scores each rank's slice
with); `from xbp.training import evaluate` finds it too.
"""

from __future__ import annotations

from typing import Any, Protocol

from xbp import backend
from xbp.backend import array_namespace, on_params_device
from xbp.functions import check_counting

__all__ = ["evaluate"]


class Predictor(Protocol):
    params: dict[str, Any]

    def predict(self, x: Any) -> Any: ...


@on_params_device
def evaluate(net: Predictor, x: Any, t: Any, batch_size: int | None = None) -> float:
    """Accuracy of `net` on (x, t) (labels or one-hot rows), computed on the device in batches of
    `batch_size` (default: the net's `eval_batch_size`, 100 images for the convnets, else 1000)."""
    n = x.shape[0]
    check_counting("evaluate", n, t.shape[0], batch_size)
    batch_size = batch_size or getattr(net, "eval_batch_size", None) or 1000
    xp = array_namespace(x, t)
    correct = xp.zeros((), dtype=xp.int32, device=backend.device(x))  # int32: JAX has no int64 by default
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)  # the standard leaves out-of-bounds stops unspecified
        predicted = xp.argmax(net.predict(x[start:stop, ...]), axis=1)
        labels = t[start:stop, ...]
        if labels.ndim != 1:
            labels = xp.argmax(labels, axis=1)
        correct = correct + xp.sum(xp.astype(predicted == labels, xp.int32))
    return int(correct) / n
