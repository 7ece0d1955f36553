"""The backends xbp knows: one adapter per array library, the names that select one, and which adapter
an array or a device belongs to (asked once per type, then looked up).

A backend is the name of an array library that array-api-compat supports and xbp trains on; the
libraries it knows but xbp cannot train on are refused by name, saying why (`CANNOT_TRAIN`).
"""

from __future__ import annotations

import importlib
from typing import Any

from xbp.backend.adapter import Adapter
from xbp.errors import BackendError

__all__ = [
    "ADAPTERS",
    "ADAPTER_OF_TYPE",
    "ALIASES",
    "BACKENDS",
    "CANNOT_TRAIN",
    "PORTABLE",
    "adapter_of",
    "canonical",
    "device_label",
    "get_adapter",
    "library_of",
]

# One line per backend, in the order errors and `python -m xbp info` list them: the module
# xbp/backend/<module>.py, whose ADAPTER answers for that library.
_ADAPTER_MODULES = (
    "numpy",
    "cupy",
    "array_api_strict",
    "torch",
    "jax",
)

ADAPTERS: dict[str, Adapter] = {}  # backend name -> its adapter
for _module in _ADAPTER_MODULES:
    _adapter: Adapter = importlib.import_module(f"{__package__}.{_module}").ADAPTER
    ADAPTERS[_adapter.name] = _adapter

# backend name -> (module to import, how to install it)
BACKENDS: dict[str, tuple[str, str]] = {name: (a.module, a.install) for name, a in ADAPTERS.items()}

# Libraries array-api-compat knows that xbp cannot train on: selecting one says why.
CANNOT_TRAIN: dict[str, str] = {
    "dask.array": ("its arrays are lazy: every optimizer step adds to each parameter's task graph "
                   "(388 tasks in W1 after 10 steps of a small net, 1,558 after 40), which is "
                   "recomputed whenever a value is read, so training slows down step after step"),
    "sparse": "sparse arrays are for data that is mostly zeros, and xbp has never been verified on them",
    "ndonnx": "its arrays build ONNX graphs, and xbp has never been verified on them",
}
_REFUSED_ALIASES = {"dask": "dask.array"}  # also the top module of dask.array's arrays

# lower-case other name -> backend name
ALIASES: dict[str, str] = {**{alias: name for name, a in ADAPTERS.items() for alias in a.aliases},
                           **_REFUSED_ALIASES}


def canonical(name: str) -> str:
    """The backend that `name` selects (a backend name or an alias); BackendError for any other name."""
    key = name.strip()
    key = ALIASES.get(key.lower(), key)
    if key in CANNOT_TRAIN:
        raise BackendError(f"backend {key!r} is not supported: {CANNOT_TRAIN[key]}. "
                           "Choose numpy (CPU), cupy (NVIDIA GPU), torch or jax.numpy instead.",
                           reason=f"{key} is not supported: {CANNOT_TRAIN[key]}")
    if key not in BACKENDS:
        valid = ", ".join(BACKENDS)
        raise BackendError(f"unknown backend {name!r}: choose one of {valid} "
                           f"(set XBP_BACKEND or call xbp.set_backend(name)).",
                           reason=f"unknown backend {name!r}")
    return key


def get_adapter(name: str) -> Adapter:
    """The adapter of backend `name` (a backend name or an alias)."""
    return ADAPTERS[canonical(name)]


PORTABLE = Adapter()  # the portable answers, for objects of no library with an adapter

# The adapter of each type seen so far (PORTABLE: no library's), filled by `adapter_of`; a hot path
# may look a type up here first, and call `adapter_of` for a type it does not hold.
ADAPTER_OF_TYPE: dict[type, Adapter] = {t: a for a in ADAPTERS.values() for t in a.types}


def adapter_of(obj: Any) -> Adapter:
    """The adapter of the library whose array or device `obj` is; PORTABLE for any other object."""
    try:
        return ADAPTER_OF_TYPE[type(obj)]
    except KeyError:
        found = next((a for a in ADAPTERS.values() if a.owns(obj)), PORTABLE)
        ADAPTER_OF_TYPE[type(obj)] = found
        return found


def library_of(x: Any) -> str:
    """The backend name of an array: 'numpy', 'cupy', 'torch', 'array_api_strict', ...; for another
    library, the name of its top module ('dask.array' for dask's)."""
    found = adapter_of(x)
    if found is not PORTABLE:
        return found.name
    module = type(x).__module__.split(".")[0]
    return _REFUSED_ALIASES.get(module, module)


def device_label(dev: Any) -> str:
    """A short name for a device: 'cpu', 'device1', 'cuda:0'."""
    return adapter_of(dev).label(dev)
