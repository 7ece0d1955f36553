"""xbp: backpropagation as chapter 5 of *Deep Learning from Scratch* teaches it, on any array library.

Layers with `forward`/`backward`, written once against the Python Array API standard, run on numpy
(CPU), CuPy (NVIDIA GPU), torch or array-api-strict. `XBP_BACKEND` (or `set_backend`) picks where
new arrays are made; computation follows the arrays. `xbp.graph` (computational graphs you can see)
loads on first use, so `import xbp` does not load the drawing code.
"""

from typing import TYPE_CHECKING

from xbp.backend import (
    array_namespace,
    asarray,
    device,
    get_backend,
    get_device,
    get_namespace,
    set_backend,
    to_cpu,
    to_device,
    to_gpu,
    using_backend,
)
from xbp.errors import (
    BackendError,
    CheckpointError,
    DatasetError,
    DeviceMismatchError,
    DownloadError,
    TrainingDivergedError,
    TrainingInterrupted,
    XbpError,
)
from xbp.params_io import load_params, save_params

if TYPE_CHECKING:
    from xbp import graph

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CheckpointError",
    "DatasetError",
    "DeviceMismatchError",
    "DownloadError",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "XbpError",
    "__version__",
    "array_namespace",
    "asarray",
    "device",
    "get_backend",
    "get_device",
    "get_namespace",
    "graph",
    "load_params",
    "save_params",
    "set_backend",
    "to_cpu",
    "to_device",
    "to_gpu",
    "using_backend",
]


if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any misspelt `xbp.name`

    def __getattr__(name: str) -> object:
        """`xbp.graph`, imported on first use (PEP 562)."""
        if name == "graph":
            import importlib

            return importlib.import_module("xbp.graph")  # which also sets it on xbp, for the next use
        raise AttributeError(f"module 'xbp' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), "graph"})
