"""The device that computes: a `with` block in which a library that runs kernels on a *current* device
(CuPy) computes where an array lives, and decorators that enter it around a net's methods.

Most libraries follow their arrays by themselves: their adapter's `scope` is None, chosen once, so
their arrays enter no block and pay nothing per call. CuPy runs each kernel, and makes each new
array, on the thread's current device, whatever `device=` was asked for, so code that computes on a
chosen GPU does so inside `device_scope` of its arrays, and a layer never imports cupy.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from xbp.backend.adapter import NO_SCOPE
from xbp.backend.registry import ADAPTER_OF_TYPE, ADAPTERS, adapter_of
from xbp.backend.selection import get_backend, get_device

__all__ = ["NO_SCOPE", "device_scope", "on_params_device", "without_device_scope"]


def device_scope(where: Any = None) -> AbstractContextManager[Any]:
    """A `with` block in which CuPy computes on the GPU of `where` (a CuPy array or device; None: the
    selected device); for every other library, and for numpy arrays, `NO_SCOPE`, which changes nothing."""
    if where is None:
        if ADAPTERS[get_backend()].scope is None:
            return NO_SCOPE
        where = get_device()
        if where is None:
            return NO_SCOPE
    scope = adapter_of(where).scope
    return NO_SCOPE if scope is None else scope(where)


def on_params_device(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a method of a net (`self.params`), a function whose first argument is a net (`fit`),
    or an optimizer's `update(self, params, grads)` to run inside `device_scope` of the first
    parameter, so that a net on GPU 1 computes on GPU 1.

    Which of the two a method is, is read once from its signature (a second argument named `params`);
    a call on a library without a scope (numpy) looks up its adapter by type and calls the method.
    """
    takes_params = list(inspect.signature(method).parameters)[1:2] == ["params"]

    @functools.wraps(method)
    def on_device(self: Any, *args: Any, **kwargs: Any) -> Any:
        params = (args[0] if args else kwargs["params"]) if takes_params else self.params
        for first in params.values():
            try:
                scope = ADAPTER_OF_TYPE[type(first)].scope
            except KeyError:
                scope = adapter_of(first).scope
            if scope is None:  # the hot path: numpy, and every library that follows its arrays
                return method(self, *args, **kwargs)
            with scope(first):
                return method(self, *args, **kwargs)
        return method(self, *args, **kwargs)  # no parameters: nothing to follow

    on_device._undecorated = (on_device, method)  # type: ignore[attr-defined]  # for without_device_scope
    return on_device


def without_device_scope(bound: Callable[..., Any]) -> Callable[..., Any]:
    """The bound method `bound` without its `on_params_device` wrapper, for a caller that is already
    inside the parameters' device scope and calls it every step (`fit` calls `gradient` and `update`
    inside the scope it entered once: on numpy each wrapper costs about 2 us of a step). Anything
    else, such as a method a subclass wrapped in a decorator of its own, comes back unchanged."""
    function = getattr(bound, "__func__", None)
    wrapper, method = getattr(function, "_undecorated", (None, None))
    if function is None or function is not wrapper or method is None:
        return bound
    return types.MethodType(method, getattr(bound, "__self__"))  # noqa: B009  # a bound method's object
