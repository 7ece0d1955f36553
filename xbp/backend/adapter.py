"""What every array library's adapter answers, and the portable answer most libraries share.

An adapter is the one place that knows one library: how to load it and check that it computes, its
devices (find the one a name means, label it, name it for a person), copies to the host, the device
scope its kernels need, the random generators that draw where its arrays live, and its fast paths.
`Adapter` gives the portable answer to each question (what the Array API standard and array-api-compat
allow for any library); a library's module `xbp/backend/<library>.py` subclasses it, overrides only
what differs, and names its instance `ADAPTER`. xbp/backend/__init__.py says how to add one.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import array_api_compat

from xbp.errors import BackendError

__all__ = ["NO_SCOPE", "Adapter", "probe_kernels"]

NO_SCOPE: AbstractContextManager[None] = contextlib.nullcontext()  # the scope of a library that needs none


class Adapter:
    """One array library as xbp sees it; the defaults are the portable answers."""

    name = ""  # the backend name that selects it: XBP_BACKEND, set_backend, library_of
    module = ""  # the module to import (its namespace, or the library array-api-compat wraps)
    install = ""  # how to install it, for the error that says it is missing
    aliases: tuple[str, ...] = ()  # other (lower-case) names that select it
    spec_heads: tuple[str, ...] = ()  # heads of a device spec that mean this library ("cuda" in "cuda:1")
    probes_at_load = False  # run training's kernels once when it loads (a GPU loads libraries late)
    has_current_device = False  # kernels run on a per-thread current device, which using_backend restores
    generator_kind = "host"  # generators of one kind can continue each other's streams
    dtype_hint = ""  # what to do when it makes another dtype than the one asked for
    types: tuple[type, ...] = ()  # its array types known without asking `owns` (numpy's, imported anyway)
    # A `with` block in which an array's (or device's) kernels run where it lives, or None when the
    # library follows its arrays by itself; None is chosen once, so such arrays pay nothing per call.
    scope: Callable[[Any], AbstractContextManager[Any]] | None = None

    # -- loading and probing

    def owns(self, obj: Any) -> bool:
        """True for an array or a device object of this library (asked once per type)."""
        return False

    def import_module(self) -> ModuleType:
        """The library's module, imported."""
        return importlib.import_module(self.module)

    def namespace(self, module: ModuleType) -> ModuleType:
        """The Array API namespace of the imported `module`, found by making a tiny array with it."""
        return array_api_compat.array_namespace(module.asarray([0.0]))

    def needs_check(self, dev: Any) -> bool:
        """True when device `dev` (None: the current one) must run `check` before training uses it."""
        return False

    def check(self, xp: ModuleType, dev: Any) -> None:
        """Run what training runs, once, on `dev`; raises what the library raises."""
        probe_kernels(xp, dev)

    def hint(self, exc: BaseException) -> str:
        """The fix for `exc`, raised while this library made or computed its first array."""
        return "Choose another backend, e.g. XBP_BACKEND=numpy."

    # -- devices

    def devices(self, xp: ModuleType) -> list[Any]:
        """The devices this library can make arrays on."""
        return [d for d in xp.__array_namespace_info__().devices() if d is not None]  # JAX lists None

    def resolve_device(self, xp: ModuleType, spec: Any) -> Any:
        """The device that `spec` names: a device object, its label or name, or its number."""
        devices = self.devices(xp)
        text = self.device_text(spec)
        for candidate in devices:
            if candidate == spec or self.label(candidate) == text or str(candidate) == text:
                return candidate
            if text.isdigit() and getattr(candidate, "id", None) == int(text):
                return candidate
            if text.isdigit() and getattr(candidate, "index", None) == int(text):
                return candidate
        found = self.parse_device(text)
        if found is not None:
            return found
        names = ", ".join(self.label(d) for d in devices)
        raise BackendError(f"backend {self.name!r} has no device {spec!r}: choose one of {names} "
                           f"(set XBP_DEVICE or pass device= to xbp.set_backend).",
                           reason=f"{self.name} has no device {spec!r}")

    def device_text(self, spec: Any) -> str:
        """`spec` as the text `resolve_device` compares with the devices' labels."""
        return str(spec).strip()

    def parse_device(self, text: str) -> Any:
        """A device the library can parse from `text` although `devices` does not list it, or None."""
        return None

    def label(self, dev: Any) -> str:
        """A short name for a device: 'cpu', 'device1', 'cuda:0'."""
        return str(dev)

    def describe(self, dev: Any) -> str | None:
        """A person's name for `dev` (None: the current device) when it is not the CPU, else None."""
        return None

    def describe_devices(self, xp: ModuleType) -> list[str]:
        """What `python -m xbp info` lists as this library's devices."""
        return [self.label(d) for d in self.devices(xp)]

    def select(self, dev: Any) -> None:
        """Make `dev` where this thread computes, when the library has a current device."""

    def current_device_kept(self) -> AbstractContextManager[Any]:
        """A block after which the library's current device is the one before it."""
        return NO_SCOPE

    # -- arrays

    def to_host(self, x: Any) -> Any:
        """A numpy copy of `x` on the host, through `__array__` or DLPack."""
        from xbp.backend import numpy as host

        return host.ADAPTER.to_host(x)

    def subtract_scaled(self, param: Any, scale: float, grad: Any) -> Any:
        """param -= scale * grad, in place where the library's arrays are mutable; returns the result."""
        param -= scale * grad
        return param

    def batch_taker(self, x: Any, batch_size: int) -> Callable[[Any], Any]:
        """index -> take(x, index, axis=0): a new array each call, as the standard has no `out=`."""
        return functools.partial(array_api_compat.array_namespace(x).take, x, axis=0)

    # -- random generators (xbp.backend.rng.DeviceRNG)

    def generator_device(self, like: Any) -> Any:
        """The device where this library draws for arrays like `like`, or None: drawn on the host."""
        return None

    def make_generator(self, dev: Any, seed: int | None) -> Any:
        """A generator on `dev`, started from `seed` (None: fresh entropy)."""
        raise NotImplementedError(f"{self.name} draws its random numbers on the host")

    def uniform(self, generator: Any, shape: tuple[int, ...], like: Any, xp: ModuleType, dev: Any) -> Any:
        """Numbers in [0, 1) of `shape`, drawn by `generator` on `dev`, with the dtype of `like`."""
        raise NotImplementedError(f"{self.name} draws its random numbers on the host")

    def generator_state(self, generator: Any) -> Any:
        """A copy of the generator's whole state, which later draws leave as it is."""
        raise NotImplementedError(f"{self.name} draws its random numbers on the host")

    def set_generator_state(self, generator: Any, state: Any, dev: Any) -> None:
        """Continue the stream whose state `generator_state` copied."""
        raise NotImplementedError(f"{self.name} draws its random numbers on the host")


def probe_kernels(xp: ModuleType, device: Any) -> None:
    """Run what training runs, once, on `device`: a float32 matmul (cuBLAS on a GPU) and an
    elementwise kernel (compiled by NVRTC on CuPy), and read the result back. Raises what they raise."""
    a = xp.reshape(xp.asarray([1.0, 2.0, 3.0, 4.0], dtype=xp.float32, device=device), (2, 2))
    product = a @ a  # [[7, 10], [15, 22]]
    if float(xp.sum(product)) != 54.0:
        raise RuntimeError(f"a 2x2 float32 matmul gave {product!r}, not [[7, 10], [15, 22]]")
    elementwise = xp.where(a > 2.0, xp.exp(a - a), a * 0.5)  # [[0.5, 1], [1, 1]]
    if float(xp.sum(elementwise)) != 3.5:
        raise RuntimeError(f"an elementwise kernel gave {elementwise!r}, not [[0.5, 1], [1, 1]]")
