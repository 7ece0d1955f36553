"""Optimizers: `update(params, grads)` changes each parameter in place, as in the book.

In-place updates keep every layer pointing at its parameters, and keep their dtype and device:
Python-number hyperparameters never promote a float32 parameter. State (velocities, squared
gradient sums) is made lazily with `zeros_like`, so it lives where the parameters live;
`state_dict()` / `load_state_dict()` carry it (and Adam's step count) through a checkpoint.

    SGD        W -= lr * dW
    Momentum   v = momentum * v - lr * dW;  W += v
    Nesterov   W += momentum^2 * v;  W -= (1 + momentum) * lr * dW;  v = momentum * v - lr * dW
    AdaGrad    h += dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)
    RMSprop    h = decay_rate * h + (1 - decay_rate) * dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)
    Adam       m += (1 - beta1)(dW - m);  v += (1 - beta2)(dW^2 - v)
               W -= lr * sqrt(1 - beta2^k) / (1 - beta1^k) * m / (sqrt(v) + 1e-7)

`Optimizer` is what they share, in the shape of Chainer's `UpdateRule`: it checks the
hyperparameters, makes the state, loops over the parameters and saves and loads the state; each
optimizer says only how its state starts (`init_state`) and how one parameter moves (`update_one`).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar, NamedTuple

from xbp.backend import array_namespace, on_params_device, subtract_scaled

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "Optimizer", "RMSprop"]

Params = dict[str, Any]


class Bound(NamedTuple):
    """What a hyperparameter may be: finite, above `low` (or at it, if `low_ok`), below `high`."""

    low: float
    high: float
    low_ok: bool
    meaning: str  # why, in a few words, for the error message

    def admits(self, value: float) -> bool:
        return math.isfinite(value) and (self.low <= value if self.low_ok else self.low < value) \
            and value < self.high

    def describe(self) -> str:
        if self.high == math.inf:
            return f"a finite number above {self.low:g}"
        return f"a number in {'[' if self.low_ok else '('}{self.low:g}, {self.high:g})"


STEP_SIZE = Bound(0.0, math.inf, False, "the size of each step")
DECAY = Bound(0.0, 1.0, True, "the share of the previous value kept each step, below 1 so that old "
                              "gradients fade")


class Optimizer:
    """Updates parameters in place, one at a time, keeping per-parameter state between updates.

    A subclass declares its hyperparameters (name -> Bound, in the order its `__init__` takes them),
    the names of its slots (dicts of one state array per parameter, attributes of the optimizer, None
    before the first update) and its counters (ints), and says how one parameter moves:

        update_one(key, param, grad) -> the moved param (the same array, changed in place, where
                                        the library allows it; a new one on JAX)

    `init_state(param)` gives the slots' arrays for one parameter (zeros like it, unless overridden),
    and `begin_update()` runs once per `update`, before the parameters move (Adam counts its steps).
    """

    _hyperparameters: ClassVar[dict[str, Bound]] = {"lr": STEP_SIZE}
    _slots: ClassVar[tuple[str, ...]] = ()
    _counters: ClassVar[tuple[str, ...]] = ()

    lr: float

    def __init__(self, **hyperparameters: float) -> None:
        for name, bound in self._hyperparameters.items():
            setattr(self, name, self._checked(name, hyperparameters[name], bound))
        for counter in self._counters:
            setattr(self, counter, 0)
        for slot in self._slots:
            setattr(self, slot, None)

    def _checked(self, name: str, value: Any, bound: Bound) -> Any:
        """`value` as given (its type decides the arithmetic), once it is a number within `bound`."""
        try:
            number = None if isinstance(value, (bool, str, bytes)) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and bound.admits(number):
            return value
        default = inspect.signature(type(self).__init__).parameters.get(name)
        fix = "" if default is None or default.default is inspect.Parameter.empty \
            else f"; pass e.g. {name}={default.default!r} (the default)"
        problem = (f"{type(self).__name__}({name}={value!r}): {name} must be {bound.describe()} "
                   f"({bound.meaning}){fix}.")
        raise TypeError(problem) if number is None else ValueError(problem)

    def init_state(self, param: Any) -> dict[str, Any]:
        """Each slot's array for `param` before its first update: zeros of its shape, dtype, device."""
        xp = array_namespace(param)
        return {slot: xp.zeros_like(param) for slot in self._slots}

    def begin_update(self) -> None:
        """Runs once per `update`, before any parameter moves."""

    def update_one(self, key: str, param: Any, grad: Any) -> Any:
        """Move the parameter `key` one step along its gradient `grad`; returns the moved parameter."""
        raise NotImplementedError(f"{type(self).__name__} must say how one parameter moves: "
                                  "define update_one(key, param, grad).")

    @on_params_device
    def update(self, params: Params, grads: Params) -> None:
        """Move every parameter one step; `params[key]` is rebound to the moved array (the same array
        on libraries whose arrays are mutable, so the layers keep pointing at it)."""
        for slot in self._slots:  # a plain loop: any() over a generator costs more, in every update
            if getattr(self, slot) is None:
                self._start(params)
                break
        self.begin_update()
        move = self.update_one
        for key, param in params.items():
            params[key] = move(key, param, grads[key])  # the same key: the dict keeps its size

    def _start(self, params: Params) -> None:
        states = {key: self.init_state(param) for key, param in params.items()}
        for slot in self._slots:
            setattr(self, slot, {key: state[slot] for key, state in states.items()})

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


class SGD(Optimizer):
    """Stochastic gradient descent: W -= lr * dW"""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr=lr)

    def update_one(self, key: str, param: Any, grad: Any) -> Any:
        return subtract_scaled(param, self.lr, grad)


class Momentum(Optimizer):
    """v = momentum * v - lr * dW;  W += v"""

    _hyperparameters: ClassVar[dict[str, Bound]] = {"lr": STEP_SIZE, "momentum": DECAY}
    _slots = ("v",)

    momentum: float
    v: Params | None

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr=lr, momentum=momentum)

    def update_one(self, key: str, param: Any, grad: Any) -> Any:
        v = self.v
        assert v is not None  # update made it
        v[key] *= self.momentum
        v[key] -= self.lr * grad
        param += v[key]
        return param


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, as the book writes it (Momentum's hyperparameters and state):
    W += momentum^2 * v;  W -= (1 + momentum) * lr * dW;  v = momentum * v - lr * dW"""

    def update_one(self, key: str, param: Any, grad: Any) -> Any:
        v = self.v
        assert v is not None  # update made it
        param += self.momentum * self.momentum * v[key]
        param -= (1 + self.momentum) * self.lr * grad
        v[key] *= self.momentum
        v[key] -= self.lr * grad
        return param


class AdaGrad(Optimizer):
    """h += dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)"""

    _slots = ("h",)

    h: Params | None

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr=lr)

    def update_one(self, key: str, param: Any, grad: Any) -> Any:
        h = self.h
        assert h is not None  # update made it
        xp = array_namespace(param, grad)
        h[key] += grad * grad
        param -= self.lr * grad / (xp.sqrt(h[key]) + 1e-7)
        return param


class RMSprop(Optimizer):
    """h = decay_rate * h + (1 - decay_rate) * dW * dW;  W -= lr * dW / (sqrt(h) + 1e-7)"""

    _hyperparameters: ClassVar[dict[str, Bound]] = {"lr": STEP_SIZE, "decay_rate": DECAY}
    _slots = ("h",)

    decay_rate: float
    h: Params | None

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        super().__init__(lr=lr, decay_rate=decay_rate)

    def update_one(self, key: str, param: Any, grad: Any) -> Any:
        h = self.h
        assert h is not None  # update made it
        xp = array_namespace(param, grad)
        h[key] *= self.decay_rate
        h[key] += (1 - self.decay_rate) * grad * grad
        param -= self.lr * grad / (xp.sqrt(h[key]) + 1e-7)
        return param


class Adam(Optimizer):
    """Adam (Kingma & Ba), with the bias correction folded into the step size as the book does."""

    _hyperparameters: ClassVar[dict[str, Bound]] = {"lr": STEP_SIZE, "beta1": DECAY, "beta2": DECAY}
    _slots = ("m", "v")
    _counters = ("iter",)

    beta1: float
    beta2: float
    iter: int
    m: Params | None
    v: Params | None

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr=lr, beta1=beta1, beta2=beta2)
        self._lr_t = 0.0  # this update's step size, bias correction included

    def begin_update(self) -> None:
        self.iter += 1
        self._lr_t = self.lr * math.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)

    def update_one(self, key: str, param: Any, grad: Any) -> Any:
        m, v = self.m, self.v
        assert m is not None and v is not None  # update made them
        xp = array_namespace(param, grad)
        m[key] += (1 - self.beta1) * (grad - m[key])
        v[key] += (1 - self.beta2) * (grad * grad - v[key])
        param -= self._lr_t * m[key] / (xp.sqrt(v[key]) + 1e-7)
        return param
