"""The book's `common.gradient`: `numerical_gradient(f, x)` by central differences (h = 1e-4)."""

from xbp.gradcheck import numerical_gradient

__all__ = ["numerical_gradient"]
