"""The selected backend (where new arrays are made), loading each backend once, and finding its devices.

Loading a backend imports it and makes a tiny array on its default device; selecting a device of a GPU
library runs a matmul and an elementwise kernel there. So a missing library, a missing CUDA device or
a driver that is too old is reported at once, with the fix, and never replaced by the CPU.
`XBP_BACKEND` and `XBP_DEVICE` are read once, when xbp is imported; the backend loads at first use, so
`python -m xbp info` can still explain what is wrong with it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from xbp.backend.registry import ADAPTERS, canonical, device_label
from xbp.errors import BackendError

__all__ = ["devices_of", "forget_namespace", "get_backend", "get_device", "get_namespace",
           "resolve_device", "set_backend", "using_backend"]


@dataclass(frozen=True)
class _Selection:
    name: str
    device: Any = None  # a device of that backend (object or its name), None for its default


_namespaces: dict[str, ModuleType] = {}  # loaded backends, by name
_probed: set[tuple[str, str]] = set()  # (backend, device label) where training's kernels ran


def get_namespace(name: str | None = None) -> ModuleType:
    """The Array API namespace of backend `name` (default: the selected backend), loading it once."""
    key = _selected.name if name is None else canonical(name)
    if key not in _namespaces:
        _namespaces[key] = _load(key)
    return _namespaces[key]


def forget_namespace(name: str) -> None:
    """Forget that backend `name` was loaded and probed, so that its next use imports and checks it
    again (for tests that make its import fail)."""
    key = canonical(name)
    _namespaces.pop(key, None)
    _probed.difference_update({probed for probed in _probed if probed[0] == key})


def _load(name: str) -> ModuleType:
    adapter = ADAPTERS[name]
    try:
        module = adapter.import_module()
    except ImportError as exc:
        raise BackendError(f"backend {name!r} cannot load: {adapter.module} is not installed "
                           f"({exc}). Fix: {adapter.install}.",
                           reason=f"{adapter.module} is not installed ({exc})") from exc
    try:
        xp = adapter.namespace(module)
    except Exception as exc:  # CUDA errors have no common base class across libraries
        reason = f"{adapter.hint(exc)} ({type(exc).__name__}: {exc})"  # the hint says the cause first
        raise BackendError(f"backend {name!r} is installed but cannot make an array: {reason}",
                           reason=reason) from exc
    if adapter.probes_at_load:
        _probe(name, xp, None)
    return xp


def _probe(name: str, xp: ModuleType, dev: Any) -> None:
    """Run a matmul and an elementwise kernel once on a device that needs it (None: the current one),
    so that a missing CUDA library is a BackendError with the fix at selection, not at the first step."""
    adapter = ADAPTERS[name]
    if not adapter.needs_check(dev):
        return
    key = (name, "current" if dev is None else device_label(dev))
    if key in _probed:
        return
    try:
        scope = contextlib.nullcontext() if dev is None or adapter.scope is None else adapter.scope(dev)
        with scope:
            adapter.check(xp, dev)
    except Exception as exc:  # cuBLAS, NVRTC and driver errors have no common base class
        reason = (f"cannot run what training runs (a float32 matmul through cuBLAS and an elementwise "
                  f"kernel compiled by NVRTC) on {key[1]}: {type(exc).__name__}: {exc}")
        raise BackendError(f"backend {name!r} can make an array but {reason}. {adapter.hint(exc)}",
                           reason=reason) from exc
    _probed.add(key)


def get_backend() -> str:
    """The name of the selected backend, where new arrays are made."""
    return _selected.name


def get_device() -> Any:
    """The selected device (a device object of the selected backend), or None for its default."""
    if _selected.device is None:
        return None
    return resolve_device(_selected.name, get_namespace(), _selected.device)


def set_backend(name: str, device: Any = None) -> None:
    """Select the backend (and optionally its device) where new arrays are made.

    `device` is a device object of that backend, or a string naming one: `"device1"` for
    array-api-strict, `1` / `"1"` / `"cuda:1"` for CuPy, `"cuda:0"` for torch. A GPU device is
    checked at once (it exists, and a matmul and an elementwise kernel run on it); on CuPy it also
    becomes the current device of this thread, where CuPy runs kernels and makes new arrays.
    """
    global _selected
    key = canonical(name)
    xp = get_namespace(key)
    chosen = None if device is None else resolve_device(key, xp, device)
    if chosen is not None:
        _probe(key, xp, chosen)
    _selected = _Selection(key, chosen)
    if chosen is not None:
        ADAPTERS[key].select(chosen)


@contextlib.contextmanager
def using_backend(name: str, device: Any = None) -> Iterator[ModuleType]:
    """Select a backend inside a `with` block and restore the previous one after it, also on errors
    (on CuPy, the chosen GPU is the current device inside the block, and the previous one after it)."""
    global _selected
    previous = _selected
    with _current_devices_kept(canonical(name)):
        set_backend(name, device)
        try:
            yield get_namespace()
        finally:
            _selected = previous


@contextlib.contextmanager
def _current_devices_kept(name: str) -> Iterator[None]:
    """Restore the current device of each loaded library that has one after the block (else a no-op)."""
    if ADAPTERS[name].has_current_device:
        get_namespace(name)  # a BackendError with the fix, before anything else
    kept = [ADAPTERS[key] for key in _namespaces if ADAPTERS[key].has_current_device]
    if not kept:
        yield
        return
    with contextlib.ExitStack() as stack:
        for adapter in kept:
            stack.enter_context(adapter.current_device_kept())
        yield


def resolve_device(name: str, xp: ModuleType, spec: Any) -> Any:
    """The device of backend `name` that `spec` names (a device object, its name, or its id)."""
    return ADAPTERS[name].resolve_device(xp, spec)


def devices_of(name: str, xp: ModuleType) -> list[Any]:
    """The devices backend `name` can make arrays on."""
    return ADAPTERS[canonical(name)].devices(xp)


_selected = _Selection(canonical(os.environ.get("XBP_BACKEND", "")),
                       os.environ.get("XBP_DEVICE", "").strip() or None)
