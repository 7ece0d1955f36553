"""The book's layer conventions on top of xbp's layers: its loss value, its label shapes, its masks.

- `SoftmaxWithLoss`: the loss is the book's `cross_entropy_error(softmax(x), t)`, with its 1e-7 inside
  the log (xbp's own layer computes the exact log-softmax), so a script prints the book's losses; the
  gradient, (y - t) / N, is the same in both. Integer labels may also come as an (N, 1) column (the
  book tests `t.size == y.size` for one-hot; ch. 7's gradient check passes `[[1]]`).
- `Dropout`: masks drawn as the book draws them, `np.random.rand(*x.shape) > dropout_ratio` from
  numpy's global generator (so `np.random.seed` repeats them), on the host, moved to the arrays' device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xbp import backend, layers
from xbp.backend import DeviceRNG, array_namespace
from xbp.functions import cross_entropy_error

__all__ = ["BookRNG", "Dropout", "SoftmaxWithLoss"]


class BookRNG(DeviceRNG):
    """`uniform` is np.random.rand(*shape), moved to the device of `like` in float64 (so that
    `> ratio` compares the book's very numbers)."""

    def uniform(self, shape: tuple[int, ...], *, like: Any) -> Any:
        host = np.random.rand(*shape)
        return host if type(like) is np.ndarray else backend.to_device(host, backend.device(like))


class SoftmaxWithLoss(layers.SoftmaxWithLoss):
    """xbp's SoftmaxWithLoss, reporting the book's loss (1e-7 inside the log)."""

    def forward(self, x: Any, t: Any) -> Any:
        xp = array_namespace(x, t)
        if t.ndim == 2 and t.shape[1] == 1 and x.ndim == 2 and x.shape[1] != 1 \
                and xp.isdtype(t.dtype, "integral"):
            t = xp.reshape(t, (t.shape[0],))
        super().forward(x, t)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss


class Dropout(layers.Dropout):
    """xbp's Dropout with the book's masks (np.random.rand); `Dropout(dropout_ratio=0.5)`."""

    def __init__(self, dropout_ratio: float = 0.5) -> None:
        super().__init__(dropout_ratio)
        self.rng = BookRNG()
