"""The book's `common.optimizer`: xbp's optimizers, which also take plain numbers as parameters.

The book's ch. 6 `optimizer_compare_naive.py` optimizes two Python floats (`params['x']`,
`params['y']`); xbp's optimizers take arrays. Here each optimizer turns such numbers into 0-d
float64 arrays for the update and hands back numbers, so a script's list of past values never
aliases a parameter. `np` is exported too: the book's scripts that `from common.optimizer import *`
use the `np` that came with it.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from xbp import optimizers

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop", "np"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, (bool, np.ndarray))


class _TakesNumbers:
    """An optimizer whose `update` also accepts Python (or numpy scalar) numbers as parameters."""

    def update(self, params: dict[str, Any], grads: dict[str, Any]) -> None:
        scalars = [key for key, value in params.items() if _is_number(value)]
        if not scalars:
            super().update(params, grads)  # type: ignore[misc]
            return
        arrays = {key: np.asarray(value, dtype=np.float64) if key in scalars else value
                  for key, value in params.items()}
        grads = {key: np.asarray(value, dtype=np.float64) if _is_number(value) else value
                 for key, value in grads.items()}
        super().update(arrays, grads)  # type: ignore[misc]
        for key in scalars:
            params[key] = float(arrays[key])


class SGD(_TakesNumbers, optimizers.SGD):
    """W -= lr * dW"""


class Momentum(_TakesNumbers, optimizers.Momentum):
    """v = momentum * v - lr * dW;  W += v"""


class Nesterov(_TakesNumbers, optimizers.Nesterov):
    """W += momentum^2 * v;  W -= (1 + momentum) * lr * dW;  v = momentum * v - lr * dW"""


class AdaGrad(_TakesNumbers, optimizers.AdaGrad):
    """h += dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)"""


class RMSprop(_TakesNumbers, optimizers.RMSprop):
    """h = decay_rate * h + (1 - decay_rate) * dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)"""


class Adam(_TakesNumbers, optimizers.Adam):
    """Adam (Kingma & Ba), with the bias correction folded into the step size as the book does."""
