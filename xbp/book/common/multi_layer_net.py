"""The book's `common.multi_layer_net`: `MultiLayerNet`, which is xbp's, in float64 as in the book."""

from __future__ import annotations

from xbp import nets
from xbp.book.booknet import BookNet, book_seed

__all__ = ["MultiLayerNet"]


class MultiLayerNet(BookNet, nets.MultiLayerNet):
    """(Affine -> activation) per hidden layer -> Affine -> SoftmaxWithLoss, with the book's arguments.

    weight_init_std: a number, 'relu' / 'he' (sqrt(2 / n_in)) or 'sigmoid' / 'xavier' (sqrt(1 / n_in));
    with weight_decay_lambda, loss += 0.5 * lambda * sum(W**2) and dW += lambda * W.
    """

    def __init__(self, input_size: int, hidden_size_list: list[int], output_size: int,
                 activation: str = "relu", weight_init_std: float | str = "relu",
                 weight_decay_lambda: float = 0, *, seed: int | None = None,
                 dtype: str = "float64") -> None:
        super().__init__(input_size, hidden_size_list, output_size, activation=activation,
                         weight_init_std=weight_init_std, weight_decay_lambda=weight_decay_lambda,
                         seed=book_seed(seed), dtype=dtype)
