"""Optimizers: `update(params, grads)` changes each parameter in place, as in the book.

In-place updates keep every layer pointing at its parameters, and keep their dtype and device:
Python-number hyperparameters never promote a float32 parameter. State (velocities, squared
gradient sums) is made lazily with `zeros_like`, so it lives where the parameters live;
`state_dict()` / `load_state_dict()` carry it (and Adam's step count) through a checkpoint.

    SGD        W -= lr * dW
    Momentum   v = momentum * v - lr * dW;  W += v
    AdaGrad    h += dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)
    Adam       m += (1 - beta1)(dW - m);  v += (1 - beta2)(dW^2 - v)
               W -= lr * sqrt(1 - beta2^k) / (1 - beta1^k) * m / (sqrt(v) + 1e-7)
"""

from __future__ import annotations

import math
from typing import Any

from xbp.backend import array_namespace, on_params_device, subtract_scaled

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum"]

Params = dict[str, Any]


class _Stateful:
    """`state_dict` / `load_state_dict` for an optimizer that names its hyperparameters, its slots (dicts
    of state arrays, one per parameter) and its counters, so that a checkpoint can continue it exactly."""

    _hyperparameters: tuple[str, ...] = ("lr",)
    _slots: tuple[str, ...] = ()
    _counters: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """{'name', 'hyperparameters', 'counters', 'slots'}: the slots hold the state arrays as they are
        (on the parameters' device), or None before the first update."""
        return {"name": type(self).__name__,
                "hyperparameters": {key: getattr(self, key) for key in self._hyperparameters},
                "counters": {key: getattr(self, key) for key in self._counters},
                "slots": {key: None if getattr(self, key) is None else dict(getattr(self, key))
                          for key in self._slots}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state` (as `state_dict` gives it, with the arrays already on the parameters'
        device and dtype): counters and copies of the slots are taken; the hyperparameters stay this
        optimizer's own."""
        if state.get("name") != type(self).__name__:
            raise ValueError(f"a state of {state.get('name')!r} cannot continue a {type(self).__name__}: "
                             "load it into the optimizer that saved it.")
        for part, names in (("counters", self._counters), ("slots", self._slots)):
            if set(state.get(part, {})) != set(names):
                raise ValueError(f"{type(self).__name__} keeps the {part} {sorted(names)}, the state "
                                 f"has {sorted(state.get(part, {}))}: load a state saved by a "
                                 f"{type(self).__name__}.")
        for key in self._counters:
            setattr(self, key, int(state["counters"][key]))
        for key in self._slots:
            slot = state["slots"][key]  # copied: updates in place must not reach the state's owner
            setattr(self, key, None if slot is None else
                    {name: array_namespace(value).asarray(value, copy=True) for name, value in slot.items()})


class SGD(_Stateful):
    """Stochastic gradient descent: W -= lr * dW"""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    @on_params_device
    def update(self, params: Params, grads: Params) -> None:
        lr = self.lr
        for key, param in params.items():
            params[key] = subtract_scaled(param, lr, grads[key])  # the same key: the dict keeps its size


class Momentum(_Stateful):
    """v = momentum * v - lr * dW;  W += v"""

    _hyperparameters, _slots = ("lr", "momentum"), ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.v: Params | None = None

    @on_params_device
    def update(self, params: Params, grads: Params) -> None:
        if self.v is None:
            self.v = _zeros_like_each(params)
        for key in params:
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            params[key] += self.v[key]


class AdaGrad(_Stateful):
    """h += dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)"""

    _slots = ("h",)

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr
        self.h: Params | None = None

    @on_params_device
    def update(self, params: Params, grads: Params) -> None:
        if self.h is None:
            self.h = _zeros_like_each(params)
        for key in params:
            xp = array_namespace(params[key], grads[key])
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (xp.sqrt(self.h[key]) + 1e-7)


class Adam(_Stateful):
    """Adam (Kingma & Ba), with the bias correction folded into the step size as the book does."""

    _hyperparameters, _slots, _counters = ("lr", "beta1", "beta2"), ("m", "v"), ("iter",)

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m: Params | None = None
        self.v: Params | None = None

    @on_params_device
    def update(self, params: Params, grads: Params) -> None:
        if self.m is None or self.v is None:
            self.m = _zeros_like_each(params)
            self.v = _zeros_like_each(params)
        self.iter += 1
        lr_t = self.lr * math.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params:
            xp = array_namespace(params[key], grads[key])
            g = grads[key]
            self.m[key] += (1 - self.beta1) * (g - self.m[key])
            self.v[key] += (1 - self.beta2) * (g * g - self.v[key])
            params[key] -= lr_t * self.m[key] / (xp.sqrt(self.v[key]) + 1e-7)


def _zeros_like_each(params: Params) -> Params:
    """A zero array like each parameter (same shape, dtype, device): an optimizer's fresh state."""
    return {key: array_namespace(value).zeros_like(value) for key, value in params.items()}


# The book's two other optimizers (chapter 6's common/optimizer.py), in the same in-place style.

class Nesterov(Momentum):
    """Nesterov's accelerated gradient, as the book writes it (Momentum's hyperparameters and state):
    W += momentum^2 * v;  W -= (1 + momentum) * lr * dW;  v = momentum * v - lr * dW"""

    @on_params_device
    def update(self, params: Params, grads: Params) -> None:
        if self.v is None:
            self.v = _zeros_like_each(params)
        for key in params:
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class RMSprop(_Stateful):
    """h = decay_rate * h + (1 - decay_rate) * dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)"""

    _hyperparameters, _slots = ("lr", "decay_rate"), ("h",)

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        self.lr = lr
        self.decay_rate = decay_rate
        self.h: Params | None = None

    @on_params_device
    def update(self, params: Params, grads: Params) -> None:
        if self.h is None:
            self.h = _zeros_like_each(params)
        for key in params:
            xp = array_namespace(params[key], grads[key])
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (xp.sqrt(self.h[key]) + 1e-7)


__all__ += ["Nesterov", "RMSprop"]
