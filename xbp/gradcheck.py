"""Gradient checking: compare backpropagation with central differences, the book's way.

    numerical_gradient:  df/dx[i] ~ (f(x + h e_i) - f(x - h e_i)) / 2h

Checks run in float64. `gradient_check` uses a step of 1e-6 rather than the book's 1e-4: in
float64 the rounding error stays near 1e-10 either way, and the smaller step keeps the difference
quotient from straddling ReLU's kink, where a hidden unit's input lies within h of zero and central
differences measure the jump instead of the slope (one such unit in a batch spoils the mean).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import array_api_compat
import numpy as np

from xbp.backend import array_namespace, device, on_params_device, to_cpu
from xbp.layers import Dropout

__all__ = ["Checkable", "gradient_check", "numerical_gradient"]


class Checkable(Protocol):
    """What `gradient_check` needs of a net (xbp's nets have it; this module imports none of them)."""

    layers: dict[str, Any]

    def astype(self, dtype: str) -> Checkable: ...
    def gradient(self, x: Any, t: Any) -> dict[str, Any]: ...
    def numerical_gradient(self, x: Any, t: Any, h: float = 1e-4) -> dict[str, Any]: ...


def numerical_gradient(f: Callable[[Any], Any], x: Any, h: float = 1e-4) -> Any:
    """df/dx by central differences, one element of `x` at a time (x is restored afterwards).

    `f(x)` returns a number or a 0-d array; `x` is an array of any backend. A writeable `x` is
    changed in place while the function runs (as in the book, so `f` may ignore its argument and
    read `x` itself); an immutable one (JAX) cannot be, so `f` gets a changed copy and must use it.
    """
    xp = array_namespace(x)
    grad = np.zeros(tuple(x.shape))
    writeable = array_api_compat.is_writeable_array(x)
    host: Any = None if writeable else np.array(to_cpu(x), dtype=np.float64)  # float64 copy to change
    for index in np.ndindex(tuple(x.shape)):
        if writeable:
            original = float(x[index])
            x[index] = original + h
            f_plus = float(f(x))
            x[index] = original - h
            f_minus = float(f(x))
            x[index] = original
        else:
            f_plus = float(f(_changed(xp, x, host, index, h)))
            f_minus = float(f(_changed(xp, x, host, index, -h)))
        grad[index] = (f_plus - f_minus) / (2 * h)
    return xp.asarray(grad, dtype=x.dtype, device=device(x))


def _changed(xp: Any, x: Any, host: np.ndarray, index: tuple[int, ...], step: float) -> Any:
    """A copy of `x` (whose float64 host copy is `host`) with `step` added to element `index`."""
    changed = host.copy()
    changed[index] += step
    return xp.asarray(changed, dtype=x.dtype, device=device(x))


@on_params_device
def gradient_check(net: Checkable, x: Any, t: Any, h: float = 1e-6) -> dict[str, float]:
    """The mean absolute difference between backprop and numerical gradients, per parameter.

    Computed on a float64 copy of `net` (the net itself is left as it is), on its device, in
    training mode; the copy's Dropout layers keep the masks of its backprop pass, so both
    gradients are of the same function.
    """
    net64 = net.astype("float64")
    xp = array_namespace(x)
    if xp.isdtype(x.dtype, "real floating"):
        x = xp.astype(x, xp.float64)
    if t.ndim == 2:
        t = xp.astype(t, xp.float64)
    backprop = net64.gradient(x, t)
    for layer in net64.layers.values():
        if isinstance(layer, Dropout):
            layer.fixed_mask = True
    numerical = net64.numerical_gradient(x, t, h=h)
    return {key: float(xp.mean(xp.abs(backprop[key] - numerical[key]))) for key in backprop}
