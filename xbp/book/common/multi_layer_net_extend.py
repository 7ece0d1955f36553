"""The book's `common.multi_layer_net_extend`: xbp's `MultiLayerNet` under the book's name and
argument names (`dropout_ration`, sic), in float64 as in the book."""

from __future__ import annotations

from xbp import nets
from xbp.book.booknet import NOT_DRAWN, BookNet
from xbp.book.common.multi_layer_net import book_weights

__all__ = ["MultiLayerNetExtend"]


class MultiLayerNetExtend(BookNet, nets.MultiLayerNet):
    """(Affine -> [BatchNorm] -> activation -> [Dropout]) per hidden layer -> Affine -> SoftmaxWithLoss.

    The book's arguments, in the book's order; `dropout_ration` is the fraction of units dropped
    (xbp's `dropout_ratio`).
    """

    def __init__(self, input_size: int, hidden_size_list: list[int], output_size: int,
                 activation: str = "relu", weight_init_std: float | str = "relu",
                 weight_decay_lambda: float = 0, use_dropout: bool = False,
                 dropout_ration: float = 0.5, use_batchnorm: bool = False, *,
                 seed: int | None = None, dtype: str = "float64") -> None:
        super().__init__(input_size, hidden_size_list, output_size, activation=activation,
                         weight_init_std=weight_init_std, weight_decay_lambda=weight_decay_lambda,
                         use_batchnorm=use_batchnorm, use_dropout=use_dropout,
                         dropout_ratio=dropout_ration, seed=NOT_DRAWN if seed is None else seed,
                         dtype=dtype)
        self._book_randomness(None if seed is not None else book_weights(self, weight_init_std))
