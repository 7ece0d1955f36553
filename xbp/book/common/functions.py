"""The book's `common.functions`: xbp's sigmoid, softmax and cross_entropy_error, and the book's others.

    identity_function(x) = x                 step_function(x) = 1 where x > 0, else 0 (integers)
    sigmoid_grad(x) = (1 - sigmoid(x)) * sigmoid(x)
    relu(x) = max(0, x)                      relu_grad(x) = 1 where x >= 0, else 0 (x's dtype)
    sum_squared_error(y, t) = 0.5 * sum((y - t)**2)
    softmax_loss(X, t) = cross_entropy_error(softmax(X), t)

Written against the Array API, as xbp's own; Python numbers and lists are taken as numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xbp.backend import array_namespace, is_array
from xbp.functions import cross_entropy_error, sigmoid, softmax

__all__ = ["cross_entropy_error", "identity_function", "relu", "relu_grad", "sigmoid", "sigmoid_grad",
           "softmax", "softmax_loss", "step_function", "sum_squared_error"]


def _array(x: Any) -> tuple[Any, Any]:
    """(x as an array, its namespace): numbers and lists become numpy arrays, as numpy takes them."""
    if not is_array(x):
        x = np.asarray(x)
    return x, array_namespace(x)


def identity_function(x: Any) -> Any:
    return x


def step_function(x: Any) -> Any:
    x, xp = _array(x)
    return xp.astype(x > 0, xp.int64)  # the book's dtype=int


def sigmoid_grad(x: Any) -> Any:
    x, _ = _array(x)
    s = sigmoid(x)
    return (1.0 - s) * s


def relu(x: Any) -> Any:
    x, xp = _array(x)
    return xp.maximum(x, 0)


def relu_grad(x: Any) -> Any:
    x, xp = _array(x)
    return xp.astype(x >= 0, x.dtype)


def sum_squared_error(y: Any, t: Any) -> Any:
    y, xp = _array(y)
    return 0.5 * xp.sum((y - t) ** 2)


def softmax_loss(X: Any, t: Any) -> Any:
    return cross_entropy_error(softmax(X), t)
