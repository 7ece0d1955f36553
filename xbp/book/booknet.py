"""What the book's nets do differently from xbp's own, in one mixin: the book's numbers.

- float64: the book's weights come from `np.random.randn`, so all its arithmetic is float64, and
  its gradient check (central differences with h = 1e-4, on the net itself) needs float64 to show
  differences of 1e-7 instead of 1e-3. The book's nets here are built in float64 by default, rather
  than letting `numerical_gradient` switch dtype behind the net's back: then every number a script
  prints (losses, accuracies, gradient differences) comes from the same arithmetic as the book's.
- Randomness is the book's own: without `seed=`, the weights are `scale * np.random.randn(...)`, drawn
  from numpy's global generator in the book's order, and Dropout's masks are `np.random.rand(...) >
  ratio` (drawn on the host, then moved to the net's device: one transfer per mask on a GPU). So a
  script seeded the book's way (`np.random.seed(0)` at its top) draws exactly the book's numbers in
  the book's order and prints the book's results. `seed=` (xbp's own) draws from xbp's generator.
- The book hands its nets numpy arrays (`x_train[batch_mask]`): arrays of another library or
  device are moved to the net's device, float32 images become float64 (exactly the values the
  book's float32 @ float64 products see, but without numpy's slow mixed-dtype matmul), and integer
  labels become int64, at the net's boundary.
- `loss` returns a Python float, as the book's scripts print and collect it: the book's value, with
  its 1e-7 inside the log (`xbp.book.booklayers.SoftmaxWithLoss`); the gradient is xbp's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xbp import backend
from xbp.backend import array_namespace, on_params_device
from xbp.book.booklayers import BookRNG, SoftmaxWithLoss
from xbp.layers import Dropout
from xbp.layers import SoftmaxWithLoss as XbpSoftmaxWithLoss

__all__ = ["NOT_DRAWN", "BookNet"]

NOT_DRAWN = 0  # the xbp seed a book net is built with before the book's own draws replace its weights


class BookNet:
    """The book's calling conventions on top of an `xbp.nets.Net` (put it first among the bases)."""

    params: dict[str, Any]
    layers: dict[str, Any]
    last_layer: XbpSoftmaxWithLoss

    def _book_randomness(self, weights: dict[str, tuple[float, tuple[int, ...]]] | None) -> None:
        """Draw `weights` (name -> (scale, shape), in the book's order) as scale * np.random.randn(*shape),
        give every Dropout the book's masks and the net the book's loss; `weights=None` (a net made with
        `seed=`) keeps the weights it drew."""
        if weights is not None:
            drawn = {key: scale * np.random.randn(*shape) for key, (scale, shape) in weights.items()}
            self.set_params({**self.state(), **drawn})  # type: ignore[attr-defined]
        for layer in self.layers.values():
            if isinstance(layer, Dropout):
                layer.rng = BookRNG()
        self.last_layer = SoftmaxWithLoss()  # the book's loss value, 1e-7 inside the log

    def _on_net(self, a: Any) -> Any:
        """`a` on the net's library and device (a no-op for arrays already there)."""
        W = next(iter(self.params.values()))
        # devices compare by id on CuPy too (docs/notes/cuda.md, "Devices")
        if type(a) is not type(W) or backend.device(a) != backend.device(W):
            a = backend.to_device(a, backend.device(W))
        return a

    def _inputs(self, x: Any) -> Any:
        x = self._on_net(x)
        xp = array_namespace(x)
        dtype = next(iter(self.params.values())).dtype
        if xp.isdtype(x.dtype, "real floating") and x.dtype != dtype:
            x = xp.astype(x, dtype)
        return x

    def _labels(self, t: Any) -> Any:
        t = self._on_net(t)
        xp = array_namespace(t)
        if xp.isdtype(t.dtype, "integral"):
            if t.ndim == 2 and t.shape[1] == 1:  # the book's test of one-hot is t.size == y.size:
                t = xp.reshape(t, (t.shape[0],))  # (N, 1) integers are labels (ch. 7's gradient check)
            if t.dtype != xp.int64:
                t = xp.astype(t, xp.int64)  # the book's uint8 labels index on every library
        return t

    @on_params_device  # the conversions too run on the net's GPU
    def predict(self, x: Any, train_flg: bool = False) -> Any:
        return super().predict(self._inputs(x), train_flg)  # type: ignore[misc]

    @on_params_device
    def loss(self, x: Any, t: Any, train_flg: bool = False) -> float:
        """The mean cross-entropy loss plus the weight decay, as a Python float."""
        return float(super().loss(self._inputs(x), self._labels(t), train_flg))  # type: ignore[misc]

    @on_params_device
    def accuracy(self, x: Any, t: Any) -> float:
        return super().accuracy(self._inputs(x), self._labels(t))  # type: ignore[misc]

    @on_params_device
    def gradient(self, x: Any, t: Any) -> dict[str, Any]:
        return super().gradient(self._inputs(x), self._labels(t))  # type: ignore[misc]

    @on_params_device
    def numerical_gradient(self, x: Any, t: Any, h: float = 1e-4) -> dict[str, Any]:
        return super().numerical_gradient(self._inputs(x), self._labels(t), h)  # type: ignore[misc]
