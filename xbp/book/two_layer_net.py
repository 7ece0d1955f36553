"""The book's `two_layer_net` (ch. 5): `TwoLayerNet`, which is xbp's, in float64 as in the book."""

from __future__ import annotations

from typing import Any

from xbp import nets
from xbp.book.booknet import NOT_DRAWN, BookNet

__all__ = ["TwoLayerNet"]


class TwoLayerNet(BookNet, nets.TwoLayerNet):
    """Affine -> Relu -> Affine -> SoftmaxWithLoss, with the book's arguments (float64 by default).

    W1 = weight_init_std * np.random.randn(input_size, hidden_size), then W2 likewise: the book's draws.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, seed: int | None = None,
                 dtype: str = "float64") -> None:
        super().__init__(input_size, hidden_size, output_size, weight_init_std,
                         seed=NOT_DRAWN if seed is None else seed, dtype=dtype)
        self._book_randomness(None if seed is not None else {
            "W1": (weight_init_std, (input_size, hidden_size)),
            "W2": (weight_init_std, (hidden_size, output_size))})

    @property
    def lastLayer(self) -> Any:
        """The book's name (in ch. 5) for the last layer, `last_layer`."""
        return self.last_layer
