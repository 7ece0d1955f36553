"""A test states inputs and the expected outputs; the harness checks forward and backward.

Reference values come from numpy in float64, written independently of xbp. Gradients are checked
against central differences in float64, taken here on host copies (`central_differences`, which
uses nothing of xbp's but `to_cpu` and `asarray`), with the relative error
    max|backprop - numerical| / max(max|numerical|, 1e-8)
which stays meaningful where single elements are near zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import xbp

RTOL_GRAD = 1e-6
STEP = 1e-5  # float64: rounding error near 1e-11 relative, truncation error near 1e-10


def central_differences(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = STEP) -> np.ndarray:
    """df/dx[i] = (f(x + h e_i) - f(x - h e_i)) / 2h for each element of the float64 host array x."""
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(x.shape):
        shifted = x.copy()
        shifted[index] += h
        f_plus = f(shifted)
        shifted[index] -= 2 * h
        grad[index] = (f_plus - f(shifted)) / (2 * h)
    return grad


def relative_error(actual: Any, expected: Any) -> float:
    a, e = np.asarray(xbp.to_cpu(actual), dtype=np.float64), np.asarray(xbp.to_cpu(expected))
    return float(np.max(np.abs(a - e)) / max(float(np.max(np.abs(e))), 1e-8))


def host(seed: int, *shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    """Seeded float64 test data on the host."""
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def check_backward(forward: Callable[..., Any], backward: Callable[[Any], Any],
                   inputs: Sequence[Any], dout: Any) -> None:
    """backward(dout) matches d(sum(forward(*inputs) * dout))/d(input) for each input.

    `inputs` are float64 arrays of one backend; `backward` returns one gradient or a tuple.
    """
    snapshot = [xbp.to_cpu(x).copy() for x in inputs]
    dout_before = xbp.to_cpu(dout).copy()
    forward(*inputs)
    grads = backward(dout)
    grads = grads if isinstance(grads, tuple) else (grads,)
    np.testing.assert_array_equal(xbp.to_cpu(dout), dout_before, err_msg="backward mutated dout")
    for x, before in zip(inputs, snapshot, strict=True):
        np.testing.assert_array_equal(xbp.to_cpu(x), before, err_msg="forward mutated its input")

    xp = xbp.array_namespace(dout)
    dtype, where = inputs[0].dtype, xbp.device(inputs[0])
    for i, (x, grad) in enumerate(zip(inputs, grads, strict=True)):
        def weighted_sum(value: np.ndarray, i: int = i) -> float:  # the input i as a new array on x's device
            changed = xp.asarray(value, dtype=dtype, device=where)
            return float(xp.sum(forward(*inputs[:i], changed, *inputs[i + 1:]) * dout))

        expected = central_differences(weighted_sum, np.asarray(xbp.to_cpu(x), dtype=np.float64))
        error = relative_error(grad, expected)
        assert error < RTOL_GRAD, f"input {i}: backward differs from central differences ({error:.2e})"
