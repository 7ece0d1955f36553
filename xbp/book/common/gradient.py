"""The book's `common.gradient`: `numerical_gradient(f, x)` by central differences (h = 1e-4), and
`numerical_gradient_2d(f, X)`, the same taken row by row (one `f` call per element, x changed in place)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xbp.backend import array_namespace
from xbp.gradcheck import numerical_gradient

__all__ = ["numerical_gradient", "numerical_gradient_2d"]


def numerical_gradient_2d(f: Callable[[Any], Any], X: Any) -> Any:
    """df/dX for a 1-D X, or row by row for a 2-D X, where `f` is given each row (the book's ch. 4)."""
    if X.ndim == 1:
        return numerical_gradient(f, X)
    return array_namespace(X).stack([numerical_gradient(f, X[i, ...]) for i in range(X.shape[0])])
