"""The book's `two_layer_net` (ch. 5): `TwoLayerNet`, which is xbp's, in float64 as in the book."""

from __future__ import annotations

from typing import Any

from xbp import nets
from xbp.book.booknet import BookNet, book_seed

__all__ = ["TwoLayerNet"]


class TwoLayerNet(BookNet, nets.TwoLayerNet):
    """Affine -> Relu -> Affine -> SoftmaxWithLoss, with the book's arguments (float64 by default)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, seed: int | None = None,
                 dtype: str = "float64") -> None:
        super().__init__(input_size, hidden_size, output_size, weight_init_std,
                         seed=book_seed(seed), dtype=dtype)

    @property
    def lastLayer(self) -> Any:
        """The book's name (in ch. 5) for the last layer, `last_layer`."""
        return self.last_layer
