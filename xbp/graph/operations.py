"""The operations a graph records, as a table: operator, layer, forward, and the local derivatives.

Each operation runs one layer with the book's `forward`/`backward`; the array layers come from
`xbp.layers`, and the few the book's figures need that those lack are here, each with its
derivative next to its forward computation.

    operation               layer            forward               backward (dout = d(final)/d(out))
    x + y                   AddLayer         out = x + y           dx = dout,       dy = dout
    x - y                   SubLayer         out = x - y           dx = dout,       dy = -dout
    x * y                   MulLayer         out = x * y           dx = dout * y,   dy = dout * x
    x / y                   DivLayer         out = x / y           dx = dout / y,   dy = -dout * x / y**2
    -x                      NegLayer         out = -x              dx = -dout
    x ** p  (p a number)    PowLayer         out = x ** p          dx = dout * p * x**(p - 1)
    x.exp()                 ExpLayer         out = exp(x)          dx = dout * out
    x.log()                 LogLayer         out = log(x)          dx = dout / x
    x.relu()                Relu             out = max(0, x)       dx = dout where x > 0, else 0
    x.sigmoid()             Sigmoid          out = sigmoid(x)      dx = dout * out * (1 - out)
    x.affine(W, b)          Affine           out = x @ W + b       dx = dout @ W.T, dW = x.T @ dout,
                                                                   db = sum(dout, axis=0)
    x.softmax_with_loss(t)  SoftmaxWithLoss  y = softmax(x),       dx = dout * (y - t) / N
                                             out = CE(y, t)        (t: labels, no derivative)

Values may be Python numbers or arrays of any backend (the last four operations, the book's array
layers, need arrays).
"""

from __future__ import annotations

import math
from typing import Any

from xbp.backend import array_namespace, is_array

__all__ = ["DivLayer", "ExpLayer", "LogLayer", "NegLayer", "PowLayer", "SubLayer", "is_array_value"]


def is_array_value(x: Any) -> bool:
    """True for arrays, False for numbers (also numpy's float64, which is a Python float)."""
    return is_array(x) and not isinstance(x, (int, float, complex))


def _math(x: Any) -> Any:
    """The namespace for `x`: its array library, or `math` for numbers."""
    return array_namespace(x) if is_array_value(x) else math


class SubLayer:
    """out = x - y.   dx = dout,  dy = -dout"""

    def forward(self, x: Any, y: Any) -> Any:
        return x - y

    def backward(self, dout: Any = 1) -> tuple[Any, Any]:
        return dout * 1, -dout


class DivLayer:
    """out = x / y.   dx = dout / y,  dy = -dout * x / y**2"""

    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None

    def forward(self, x: Any, y: Any) -> Any:
        self.x = x
        self.y = y
        return x / y

    def backward(self, dout: Any = 1) -> tuple[Any, Any]:
        dx = dout / self.y
        dy = -dx * self.x / self.y
        return dx, dy


class NegLayer:
    """out = -x.   dx = -dout"""

    def forward(self, x: Any) -> Any:
        return -x

    def backward(self, dout: Any = 1) -> Any:
        return -dout


class PowLayer:
    """out = x ** p for a fixed exponent p.   dx = dout * p * x ** (p - 1)"""

    def __init__(self, p: float) -> None:
        self.p = p
        self.x: Any = None

    def forward(self, x: Any) -> Any:
        self.x = x
        return x**self.p

    def backward(self, dout: Any = 1) -> Any:
        return dout * self.p * self.x ** (self.p - 1)


class ExpLayer:
    """out = exp(x).   dx = dout * out"""

    def __init__(self) -> None:
        self.out: Any = None

    def forward(self, x: Any) -> Any:
        self.out = _math(x).exp(x)
        return self.out

    def backward(self, dout: Any = 1) -> Any:
        return dout * self.out


class LogLayer:
    """out = log(x).   dx = dout / x"""

    def __init__(self) -> None:
        self.x: Any = None

    def forward(self, x: Any) -> Any:
        self.x = x
        return _math(x).log(x)

    def backward(self, dout: Any = 1) -> Any:
        return dout / self.x
