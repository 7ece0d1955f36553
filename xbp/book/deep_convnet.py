"""The book's `deep_convnet` (ch. 8): `DeepConvNet`, which is xbp's, in float64 as in the book.

(conv - relu - conv - relu - pool) x 3 - affine - relu - dropout - affine - dropout - softmax; the
book's arguments and draws: W1..W8 = sqrt(2 / n) * np.random.randn(...), with the book's fixed n per
layer (1*3*3, 16*3*3, 16*3*3, 32*3*3, 32*3*3, 64*3*3, 64*4*4, hidden_size: the numbers for its default
conv_params, kept for others too, as the book does), Dropout masks from np.random.rand, and `loss`
in training mode, as the book's `loss` calls `predict(x, train_flg=True)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from xbp import convnets
from xbp.backend import on_params_device
from xbp.book.booknet import NOT_DRAWN, BookNet
from xbp.book.convnet_io import BookConvNet

__all__ = ["DeepConvNet"]

_DEFAULTS = convnets.DEEP_CONV_PARAMS


class DeepConvNet(BookNet, BookConvNet, convnets.DeepConvNet):
    """xbp's DeepConvNet with the book's conventions (see xbp.book.booknet)."""

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 conv_param_1: Mapping[str, int] = _DEFAULTS[0],
                 conv_param_2: Mapping[str, int] = _DEFAULTS[1],
                 conv_param_3: Mapping[str, int] = _DEFAULTS[2],
                 conv_param_4: Mapping[str, int] = _DEFAULTS[3],
                 conv_param_5: Mapping[str, int] = _DEFAULTS[4],
                 conv_param_6: Mapping[str, int] = _DEFAULTS[5],
                 hidden_size: int = 50, output_size: int = 10, *, seed: int | None = None,
                 dtype: str = "float64") -> None:
        super().__init__(input_dim, conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5,
                         conv_param_6, hidden_size, output_size, seed=NOT_DRAWN if seed is None else seed,
                         dtype=dtype)
        pre_node_nums = [1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3, 64 * 3 * 3, 64 * 4 * 4,
                         hidden_size]
        self._book_randomness(None if seed is not None else {
            f"W{i}": (math.sqrt(2.0 / n), tuple(self.params[f"W{i}"].shape))
            for i, n in enumerate(pre_node_nums, start=1)})

    @on_params_device
    def loss(self, x: Any, t: Any, train_flg: bool = True) -> float:
        """The book's loss: the forward pass in training mode (its dropout masks drawn)."""
        return super().loss(x, t, train_flg)
