"""The book's `common.functions`, as far as chapters 5 and 6 use it: xbp's functions."""

from xbp.functions import cross_entropy_error, sigmoid, softmax

__all__ = ["cross_entropy_error", "sigmoid", "softmax"]
