"""The book's `common.multi_layer_net`: `MultiLayerNet`, which is xbp's, in float64 as in the book."""

from __future__ import annotations

from xbp import nets
from xbp.book.booknet import NOT_DRAWN, BookNet

__all__ = ["MultiLayerNet", "book_weights"]


def book_weights(net: nets.MultiLayerNet,
                 weight_init_std: float | str) -> dict[str, tuple[float, tuple[int, ...]]]:
    """W1, W2, ...: the book's scale (a number, or sqrt(2 / n_in) for 'relu'/'he', sqrt(1 / n_in) for
    'sigmoid'/'xavier') and shape of each weight, in the book's order of draws."""
    sizes = [net.input_size, *net.hidden_size_list, net.output_size]
    return {f"W{idx}": (nets.init_std(weight_init_std, sizes[idx - 1]), (sizes[idx - 1], sizes[idx]))
            for idx in range(1, len(sizes))}


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
                         seed=NOT_DRAWN if seed is None else seed, dtype=dtype)
        self._book_randomness(None if seed is not None else book_weights(self, weight_init_std))
