"""numpy: the host, where xbp trains by default, copies arrays to, and draws portable random numbers.

Its arrays live on the one CPU device ('cpu', as array-api-compat says), need no device scope, and
have fast paths: a namespace whose reductions skip numpy's Python wrappers, an in-place update in
cache-sized blocks, and batches gathered into one buffer. Each gives the bits of the portable code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np
from array_api_compat import is_numpy_array

from xbp.backend.adapter import Adapter

__all__ = ["ADAPTER", "ARRAY", "DEVICE", "NAMESPACE", "NumpyAdapter", "subtract_scaled"]

ARRAY = np.ndarray  # the hot paths' test: `type(x) is ARRAY`
DEVICE = "cpu"  # what array_api_compat.device answers for a numpy array


def _fast_namespace(compat: ModuleType) -> ModuleType:
    """array-api-compat's numpy namespace, with `sum`, `max` and `min` called as the ufunc reductions
    they end in, and `astype` and `take` as the array's methods.

    They give the values, dtypes, shapes and scalar types of compat's own (tests/test_backend.py
    compares them) for a microsecond less a call (docs/notes/numpy.md); every other name is compat's
    object, and `__name__` stays compat's, so is_numpy_namespace still knows it.
    """
    fast = ModuleType(compat.__name__, compat.__doc__)
    fast.__dict__.update(compat.__dict__)
    fast.__dict__.update(sum=_sum, max=_max, min=_min, astype=_astype, take=_take)
    return fast


_add_reduce: Callable[..., Any] = np.add.reduce
_maximum_reduce: Callable[..., Any] = np.maximum.reduce
_minimum_reduce: Callable[..., Any] = np.minimum.reduce


def _sum(x: Any, /, *, axis: int | tuple[int, ...] | None = None, dtype: Any = None,
         keepdims: bool = False) -> Any:
    """sum(x) over `axis` (all axes for None), as numpy.sum computes it."""
    return _add_reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)


def _astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    """x as `dtype` (a copy unless copy=False and x already has it), as compat's astype for numpy."""
    if device is not None and device != DEVICE:
        return _COMPAT.astype(x, dtype, copy=copy, device=device)  # its error
    return x.astype(dtype, copy=copy)


def _take(x: Any, indices: Any, /, *, axis: int | None = None) -> Any:
    """x's entries at `indices` along `axis`, as numpy.take picks them."""
    return x.take(indices, axis=axis)


def _max(x: Any, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
    """max(x) over `axis` (all axes for None), as numpy.max computes it."""
    return _maximum_reduce(x, axis=axis, keepdims=keepdims)


def _min(x: Any, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
    """min(x) over `axis` (all axes for None), as numpy.min computes it."""
    return _minimum_reduce(x, axis=axis, keepdims=keepdims)


_COMPAT = array_api_compat.array_namespace(np.empty(0))
NAMESPACE = _fast_namespace(_COMPAT)  # the one namespace array_namespace gives numpy arrays

_BLOCK_ELEMENTS = 65536  # 256 KiB of float32: a block's temporary stays in the core's cache


def subtract_scaled(param: Any, scale: float, grad: Any) -> Any:
    """param -= scale * grad in blocks of rows whose temporary fits in the cache, for a large array.

    The portable expression makes a temporary as large as `param` and reads it back: for a 784 x
    1000 float32 weight (3 MB) that round trip costs as much as the update. The blocks run the
    same elementwise arithmetic, so they give the same bits (tests/test_backend.py checks it).
    """
    if param.size > _BLOCK_ELEMENTS and type(grad) is np.ndarray and param.ndim > 1 \
            and param.shape == grad.shape and type(param) is np.ndarray:
        rows = max(1, _BLOCK_ELEMENTS * param.shape[0] // param.size)
        for start in range(0, param.shape[0], rows):
            param[start:start + rows] -= scale * grad[start:start + rows]
        return param
    param -= scale * grad
    return param


class NumpyAdapter(Adapter):
    """numpy on the CPU."""

    name = "numpy"
    module = "numpy"
    install = 'pip install numpy (it comes with xbp: pip install "xbp")'
    aliases = ("", "np")  # "": XBP_BACKEND unset or empty
    types = (np.ndarray,)  # also for JAX's float0 gradients, which are numpy arrays

    def owns(self, obj: Any) -> bool:
        return is_numpy_array(obj)

    def namespace(self, module: ModuleType) -> ModuleType:
        return NAMESPACE

    def to_host(self, x: Any) -> Any:
        """`x` itself for a numpy array; anything else copied through `__array__` or DLPack."""
        if isinstance(x, np.ndarray):
            return x
        if not array_api_compat.is_array_api_obj(x):
            return np.asarray(x)
        try:
            return np.asarray(x)
        except (RuntimeError, TypeError, ValueError):  # array-api-strict refuses __array__ off its CPU
            return np.array(np.from_dlpack(x), copy=True)

    def subtract_scaled(self, param: Any, scale: float, grad: Any) -> Any:
        return subtract_scaled(param, scale, grad)

    def batch_taker(self, x: Any, batch_size: int) -> Callable[[Any], Any]:
        """index -> x[index] written into one buffer made here, valid until the next call, so that
        the loop's batch stays in the cache instead of being a new array every step."""
        if type(x) is not np.ndarray:
            return super().batch_taker(x, batch_size)
        rows = np.empty((batch_size, *x.shape[1:]), dtype=x.dtype)
        # mode="clip": "raise" would first copy into a buffer of its own (numpy's take with out=);
        # the caller's indices are in range, and ones that were not would be clipped, not read.
        return functools.partial(x.take, axis=0, out=rows, mode="clip")

    # -- numpy's PCG64, which also draws the portable path's numbers for every other library

    def generator_device(self, like: Any) -> Any:
        return DEVICE

    def make_generator(self, dev: Any, seed: int | None) -> Any:
        return np.random.default_rng(seed)

    def random(self, generator: Any, shape: tuple[int, ...], single: bool) -> Any:
        """Numbers in [0, 1) of `shape` on the host, float32 if `single` else float64."""
        return generator.random(shape, dtype=np.float32 if single else np.float64)

    def uniform(self, generator: Any, shape: tuple[int, ...], like: Any, xp: ModuleType, dev: Any) -> Any:
        draw = self.random(generator, shape, like.dtype == xp.float32)
        return draw if draw.dtype == like.dtype else xp.astype(draw, like.dtype)

    def generator_state(self, generator: Any) -> Any:
        """numpy's bit-generator state (a dict of ints)."""
        return generator.bit_generator.state

    def set_generator_state(self, generator: Any, state: Any, dev: Any) -> None:
        generator.bit_generator.state = state


ADAPTER = NumpyAdapter()
