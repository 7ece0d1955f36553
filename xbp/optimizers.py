"""Optimizers: `update(params, grads)` changes each parameter in place, as in the book.

In-place updates keep every layer pointing at its parameters, and keep their dtype and device:
Python-number hyperparameters never promote a float32 parameter. State (velocities, squared
gradient sums) is made lazily with `zeros_like`, so it lives where the parameters live.

    SGD        W -= lr * dW
    Momentum   v = momentum * v - lr * dW;  W += v
    AdaGrad    h += dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)
    Adam       m += (1 - beta1)(dW - m);  v += (1 - beta2)(dW^2 - v)
               W -= lr * sqrt(1 - beta2^k) / (1 - beta1^k) * m / (sqrt(v) + 1e-7)
"""

from __future__ import annotations

import math
from typing import Any

from xbp.backend import array_namespace

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum"]

Params = dict[str, Any]


class SGD:
    """Stochastic gradient descent: W -= lr * dW"""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def update(self, params: Params, grads: Params) -> None:
        for key in params:
            params[key] -= self.lr * grads[key]


class Momentum:
    """v = momentum * v - lr * dW;  W += v"""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.v: Params | None = None

    def update(self, params: Params, grads: Params) -> None:
        if self.v is None:
            self.v = {key: _zeros_like(value) for key, value in params.items()}
        for key in params:
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            params[key] += self.v[key]


class AdaGrad:
    """h += dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)"""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr
        self.h: Params | None = None

    def update(self, params: Params, grads: Params) -> None:
        if self.h is None:
            self.h = {key: _zeros_like(value) for key, value in params.items()}
        for key in params:
            xp = array_namespace(params[key], grads[key])
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (xp.sqrt(self.h[key]) + 1e-7)


class Adam:
    """Adam (Kingma & Ba), with the bias correction folded into the step size as the book does."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m: Params | None = None
        self.v: Params | None = None

    def update(self, params: Params, grads: Params) -> None:
        if self.m is None or self.v is None:
            self.m = {key: _zeros_like(value) for key, value in params.items()}
            self.v = {key: _zeros_like(value) for key, value in params.items()}
        self.iter += 1
        lr_t = self.lr * math.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params:
            xp = array_namespace(params[key], grads[key])
            g = grads[key]
            self.m[key] += (1 - self.beta1) * (g - self.m[key])
            self.v[key] += (1 - self.beta2) * (g * g - self.v[key])
            params[key] -= lr_t * self.m[key] / (xp.sqrt(self.v[key]) + 1e-7)


def _zeros_like(x: Any) -> Any:
    return array_namespace(x).zeros_like(x)


# The book's two other optimizers (chapter 6's common/optimizer.py), in the same in-place style.

class Nesterov:
    """Nesterov's accelerated gradient, as the book writes it:
    W += momentum^2 * v;  W -= (1 + momentum) * lr * dW;  v = momentum * v - lr * dW"""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.v: Params | None = None

    def update(self, params: Params, grads: Params) -> None:
        if self.v is None:
            self.v = {key: _zeros_like(value) for key, value in params.items()}
        for key in params:
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class RMSprop:
    """h = decay_rate * h + (1 - decay_rate) * dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)"""

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        self.lr = lr
        self.decay_rate = decay_rate
        self.h: Params | None = None

    def update(self, params: Params, grads: Params) -> None:
        if self.h is None:
            self.h = {key: _zeros_like(value) for key, value in params.items()}
        for key in params:
            xp = array_namespace(params[key], grads[key])
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (xp.sqrt(self.h[key]) + 1e-7)


__all__ += ["Nesterov", "RMSprop"]
