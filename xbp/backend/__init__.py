"""Backends: where new arrays are made, and how arrays move between devices.

Computation follows the arrays: a layer asks its inputs for their namespace with
`array_namespace(x, W)` and never reads the selected backend. The selected backend (set by
`XBP_BACKEND` / `XBP_DEVICE` at import, `set_backend`, or `using_backend`) only decides where *new*
arrays are made: parameters at construction, data sets moved to the device, checkpoints loaded.

A backend is the name of an array library that array-api-compat supports and xbp trains on (`numpy`,
`cupy`, `torch`, `array_api_strict`, `jax.numpy`; `dask.array`, `sparse` and `ndonnx` are refused,
saying why, in `CANNOT_TRAIN`). Loading one imports it and makes a tiny array on its default (or
chosen) device, so a missing library, a missing CUDA device or a driver that is too old is reported
at once, with the fix, and never replaced by the CPU.

This package is a front over one adapter per library; the rest of xbp imports only the front:

    adapter.py           the interface every adapter answers, with the portable answers
    registry.py          the adapters, the names that select them, which adapter an array belongs to
    selection.py         the selected backend, loading and probing each backend once, its devices
    arrays.py            array_namespace, device, to_cpu, to_device, asarray, the loop's fast paths
    scopes.py            device_scope, on_params_device, without_device_scope
    rng.py               DeviceRNG: random numbers drawn where the arrays live
    numpy.py, cupy.py, torch.py, jax.py, array_api_strict.py: the adapters, the only modules that
                         know a library

To add a backend (a library array-api-compat supports):

1. Write `xbp/backend/<library>.py`: a subclass of `adapter.Adapter` that sets `name` (what
   `XBP_BACKEND` says), `module` (what to import) and `install` (how), and `owns(obj)` (True for its
   arrays and devices, asked with array-api-compat's `is_<library>_array`); override what differs from
   the portable answers (devices, labels, a device scope, a generator on its device, fast paths);
   end the module with `ADAPTER = <YourAdapter>()`.
2. Add the module's name to `_ADAPTER_MODULES` in `registry.py` (one line). The `xp` fixture of
   tests/conftest.py now runs the whole suite on it; add its requirements file and a row to
   `backends/README.md`.
"""

from xbp.backend.adapter import NO_SCOPE, Adapter
from xbp.backend.arrays import (
    array_namespace,
    asarray,
    batch_taker,
    checked_dtype,
    device,
    device_name,
    is_array,
    subtract_scaled,
    to_cpu,
    to_device,
    to_gpu,
)
from xbp.backend.registry import (
    ADAPTERS,
    BACKENDS,
    CANNOT_TRAIN,
    adapter_of,
    device_label,
    get_adapter,
    library_of,
)
from xbp.backend.rng import DeviceRNG
from xbp.backend.scopes import device_scope, on_params_device, without_device_scope
from xbp.backend.selection import (
    devices_of,
    forget_namespace,
    get_backend,
    get_device,
    get_namespace,
    set_backend,
    using_backend,
)

__all__ = [
    "ADAPTERS",
    "BACKENDS",
    "CANNOT_TRAIN",
    "NO_SCOPE",
    "Adapter",
    "DeviceRNG",
    "adapter_of",
    "array_namespace",
    "asarray",
    "batch_taker",
    "checked_dtype",
    "device",
    "device_label",
    "device_name",
    "device_scope",
    "devices_of",
    "forget_namespace",
    "get_adapter",
    "get_backend",
    "get_device",
    "get_namespace",
    "is_array",
    "library_of",
    "on_params_device",
    "set_backend",
    "subtract_scaled",
    "to_cpu",
    "to_device",
    "to_gpu",
    "using_backend",
    "without_device_scope",
]
