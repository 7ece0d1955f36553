"""The book's `simple_convnet` (ch. 7): `SimpleConvNet`, which is xbp's, in float64 as in the book.

conv - relu - pool - affine - relu - affine - softmax; the book's arguments, draws
(W1, W2, W3 = weight_init_std * np.random.randn(...)), `accuracy(x, t, batch_size=100)` and `.pkl` files.
"""

from __future__ import annotations

from collections.abc import Mapping

from xbp import convnets
from xbp.book.booknet import NOT_DRAWN, BookNet
from xbp.book.convnet_io import BookConvNet

__all__ = ["SimpleConvNet"]


class SimpleConvNet(BookNet, BookConvNet, convnets.SimpleConvNet):
    """xbp's SimpleConvNet with the book's conventions (see xbp.book.booknet)."""

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 conv_param: Mapping[str, int] | None = None, hidden_size: int = 100,
                 output_size: int = 10, weight_init_std: float = 0.01, *, seed: int | None = None,
                 dtype: str = "float64") -> None:
        super().__init__(input_dim, conv_param, hidden_size, output_size, weight_init_std,
                         seed=NOT_DRAWN if seed is None else seed, dtype=dtype)
        shapes = {key: tuple(self.params[key].shape) for key in ("W1", "W2", "W3")}
        self._book_randomness(None if seed is not None else
                              {key: (weight_init_std, shape) for key, shape in shapes.items()})
