"""Asking arrays where they live, and making and moving arrays between libraries and devices.

Computation follows the arrays: `array_namespace(x, W)` is the namespace a layer computes with, and
`device(x)` the device it makes new arrays on. Arrays move through the host (`to_cpu`), or within one
library through array-api-compat's `to_device`; each library's adapter says how it copies to the host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat

from xbp.backend import numpy as host
from xbp.backend.registry import (
    ADAPTERS,
    ALIASES,
    BACKENDS,
    PORTABLE,
    adapter_of,
    canonical,
    device_label,
    library_of,
)
from xbp.backend.selection import get_backend, get_device, get_namespace, resolve_device
from xbp.errors import BackendError, DeviceMismatchError

__all__ = [
    "array_namespace",
    "asarray",
    "batch_taker",
    "checked_dtype",
    "device",
    "device_name",
    "is_array",
    "subtract_scaled",
    "to_cpu",
    "to_device",
    "to_gpu",
]

_HOST_ARRAY = host.ARRAY
_HOST_NAMESPACE = host.NAMESPACE
_HOST_DEVICE = host.DEVICE
_GPU_BACKEND = "cupy"  # what to_gpu means, whatever library its array comes from


def is_array(x: Any) -> bool:
    """True for an array of any library array-api-compat knows (not for Python numbers)."""
    return array_api_compat.is_array_api_obj(x)


def array_namespace(*arrays: Any) -> ModuleType:
    """The namespace shared by `arrays` (Python numbers and None are ignored).

    Raises DeviceMismatchError when the arrays come from different libraries or devices.
    """
    for a in arrays:
        if type(a) is not _HOST_ARRAY:
            break
    else:
        if arrays:
            return _HOST_NAMESPACE  # the hot path: numpy arrays all live on the one CPU device
    present = [a for a in arrays if a is not None and not isinstance(a, (int, float, complex))]
    if not present:
        raise TypeError("array_namespace() needs at least one array; got only Python numbers.")
    if all(type(a) is _HOST_ARRAY for a in present):
        return _HOST_NAMESPACE
    try:
        xp = array_api_compat.array_namespace(*present)
    except TypeError as exc:
        if len({library_of(a) for a in present}) > 1:
            raise DeviceMismatchError(_mismatch_message(present)) from exc
        raise
    first = array_api_compat.device(present[0])
    if any(array_api_compat.device(a) != first for a in present[1:]):
        raise DeviceMismatchError(_mismatch_message(present))
    return xp


def _mismatch_message(arrays: list[Any]) -> str:
    seen = list(dict.fromkeys(f"{library_of(a)} array on {device_label(array_api_compat.device(a))}"
                              for a in arrays))
    return (f"arrays on different libraries or devices were combined: {' and '.join(seen)}. "
            "Move them to one device first, e.g. net.to_device(xbp.device(x)) or "
            "x = xbp.to_device(x, xbp.device(net.params['W1'])).")


def device(x: Any) -> Any:
    """The device `x` lives on ('cpu' for numpy arrays)."""
    if type(x) is _HOST_ARRAY:
        return _HOST_DEVICE  # what array_api_compat.device answers for numpy, without its dispatch
    return array_api_compat.device(x)


def device_name(dev: Any = None) -> str:
    """A person's name for a device: the GPU's name and memory for CuPy, the CPU model otherwise.

    Without `dev`, the selected device; on CuPy without a selected device, the current one.
    """
    name = get_backend() if dev is None else _backend_of_device(dev)
    if dev is None:
        dev = get_device()
    described = ADAPTERS[name].describe(dev)
    if described is not None:
        return described
    label = "cpu" if dev is None else device_label(dev)
    return f"{_cpu_model()} ({name} {label})"


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _backend_of_device(dev: Any) -> str:
    if isinstance(dev, str):
        return host.ADAPTER.name if dev == _HOST_DEVICE else get_backend()
    found = adapter_of(dev)
    return get_backend() if found is PORTABLE else found.name


# ---------------------------------------------------------------- making and moving arrays

def asarray(obj: Any, dtype: Any = None, device: Any = None) -> Any:
    """`obj` as an array of the selected backend, on its selected device (or `device`).

    `dtype` may be a dtype of that backend or its name ("float32"). Arrays of another library are
    copied through the host.
    """
    xp = get_namespace()
    if isinstance(dtype, str):
        dtype = getattr(xp, dtype)
    if device is None:
        device = get_device()
    elif isinstance(device, (str, int)):
        device = resolve_device(get_backend(), xp, device)
    if is_array(obj) and library_of(obj) != get_backend():
        obj = to_cpu(obj)
    return checked_dtype(xp.asarray(obj, dtype=dtype, device=device), dtype)


def checked_dtype(x: Any, dtype: Any) -> Any:
    """`x`, after checking that it has the `dtype` asked for (None: any); JAX without 64-bit arrays
    makes float32 where float64 is asked for, which would silently change what a check measures."""
    if dtype is not None and x.dtype != dtype:
        asked = getattr(dtype, "__name__", dtype)
        reason = f"{library_of(x)} made an array of {x.dtype} where {asked} was asked for"
        hints = " ".join(a.dtype_hint for a in ADAPTERS.values() if a.dtype_hint)
        raise BackendError(f"{reason}. {hints}", reason=reason)
    return x


def to_cpu(x: Any) -> Any:
    """A numpy copy of `x` on the host (numpy arrays are returned as they are)."""
    if type(x) is _HOST_ARRAY:
        return x
    return adapter_of(x).to_host(x)


def to_device(x: Any, device: Any) -> Any:
    """`x` moved to `device`, which may live in another library.

    `device` is a device object (as `xbp.device(y)` returns), or a string: a device of x's own
    library ("device1", "cuda:0"), "cpu" (numpy), "cuda" / "cuda:N" (CuPy), or
    "<backend>:<device>" ("torch:cuda:0", "array_api_strict:device1").
    """
    target, dev = _target_of(x, device)
    if target == library_of(x):
        if dev is None or array_api_compat.device(x) == dev:
            return x
        return array_api_compat.to_device(x, dev)
    xp = get_namespace(target)
    return xp.asarray(to_cpu(x), device=dev)


def to_gpu(x: Any, device: Any = None) -> Any:
    """`x` as a CuPy array on GPU `device` (an id or a cupy.cuda.Device; default: the current one).

    It always means CuPy, whatever library `x` comes from (a torch CUDA tensor too, copied through
    the host); to move a torch tensor to CUDA, use `to_device(x, "torch:cuda:0")`.
    """
    return to_device(x, _GPU_BACKEND if device is None else f"{_GPU_BACKEND}:{getattr(device, 'id', device)}")


def _target_of(x: Any, spec: Any) -> tuple[str, Any]:
    """(backend name, device object or None) that a device spec names, seen from array `x`."""
    if not isinstance(spec, str):
        name = _backend_of_device(spec) if not isinstance(spec, int) else library_of(x)
        return name, resolve_device(name, get_namespace(name), spec)
    own = library_of(x)
    with contextlib.suppress(BackendError):
        return own, resolve_device(own, get_namespace(own), spec)
    head, _, rest = spec.partition(":")
    if head in BACKENDS or head.lower() in ALIASES:
        name = canonical(head)
        return name, (resolve_device(name, get_namespace(name), rest) if rest else None)
    if spec == _HOST_DEVICE:
        return host.ADAPTER.name, None
    for name, adapter in ADAPTERS.items():
        if head in adapter.spec_heads:
            xp = get_namespace(name)
            return name, resolve_device(name, xp, rest) if rest else None
    raise BackendError(f"unknown device {spec!r}: use a device object (xbp.device(y)), 'cpu', "
                       "'cuda:N', or '<backend>:<device>' such as 'array_api_strict:device1'.",
                       reason=f"unknown device {spec!r}")


# ---------------------------------------------------------------- the training loop's fast paths

def subtract_scaled(param: Any, scale: float, grad: Any) -> Any:
    """param -= scale * grad, in place (a new array on JAX, whose arrays are immutable); returns it.

    A library's adapter may do it faster with the same bits: numpy updates a large array in blocks
    whose temporary stays in the cache.
    """
    if type(param) is _HOST_ARRAY:
        return _host_subtract_scaled(param, scale, grad)
    return adapter_of(param).subtract_scaled(param, scale, grad)


_host_subtract_scaled = host.subtract_scaled


def batch_taker(x: Any, batch_size: int) -> Callable[[Any], Any]:
    """A function `index -> x[index]` along axis 0, for a training loop's batches of `batch_size`
    indices known to be in range.

    On numpy each call writes its rows into one buffer made here, so a batch is valid until the next
    call: the loop's batch stays in the cache instead of being a new array every step (a 100 x 784
    float32 batch is 300 KiB). Elsewhere each call is `xp.take(x, index, axis=0)`: a new array, as
    the standard has no `out=`.
    """
    return adapter_of(x).batch_taker(x, batch_size)
