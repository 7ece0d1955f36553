"""The book's `common.util`: `smooth_curve`, `shuffle_dataset` (ch. 6), and `im2col`, `col2im`,
`conv_output_size` (ch. 7: xbp's, with the book's `conv_output_size`, which returns a float)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xbp import backend
from xbp.backend import array_namespace
from xbp.convolution import col2im, im2col

__all__ = ["col2im", "conv_output_size", "im2col", "shuffle_dataset", "smooth_curve"]


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> float:
    """(input_size + 2 * pad - filter_size) / stride + 1, as the book computes it (a float)."""
    return (input_size + 2 * pad - filter_size) / stride + 1


def smooth_curve(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """The values of `x` smoothed by a Kaiser window (length 11, beta 2), as the book plots losses.

    y[i] = sum_k w[k] * s[i + k] / sum(w), where s is x with 10 values mirrored onto each end:
    x[10], ..., x[1] before it and x[-1], ..., x[-10] after it (the book's padding, edge repeated
    only at the end); y has len(x) values. `x` needs at least 11 values.
    """
    values = np.asarray([float(v) for v in x], dtype=np.float64)
    window = 11
    if values.size < window:
        raise ValueError(f"smooth_curve needs at least {window} values, got {values.size}.")
    padded = np.concatenate([values[window - 1:0:-1], values, values[:-window:-1]])
    weights = np.kaiser(window, 2)
    smoothed = np.convolve(weights / weights.sum(), padded, mode="valid")
    half = window // 2
    return smoothed[half:len(smoothed) - half]


def shuffle_dataset(x: Any, t: Any) -> tuple[Any, Any]:
    """(x, t) with their rows in one random order, drawn by `np.random.permutation` (the global state)."""
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but t has {t.shape[0]}: pass one label per sample.")
    permutation = np.random.permutation(x.shape[0])
    return take_rows(x, permutation), take_rows(t, permutation)


def take_rows(a: Any, index: np.ndarray) -> Any:
    """Rows `index` (a numpy array of ints) of `a`, gathered where `a` lives: a new array."""
    return array_namespace(a).take(a, backend.to_device(index, backend.device(a)), axis=0)
