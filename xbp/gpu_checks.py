"""What a GPU backend needs, checked when it is selected, so that a missing piece is one clear error.

Training uses three things from CUDA: the driver (every call), cuBLAS (`x @ W`) and, for CuPy, NVRTC
(each elementwise kernel is compiled at its first use). `probe` runs a small matmul and an
elementwise kernel on the device being selected, so that a missing library fails at selection with
the fix, not as a raw error at the first training step. `explain` turns what a failed CUDA call
raised into that fix: "no NVIDIA driver found" when the driver library itself is absent, rather
than the CUDA runtime's own "driver version is insufficient", which it reports in that case too.
"""

from __future__ import annotations

import ctypes
import sys
from types import ModuleType
from typing import Any

__all__ = ["CUDA_EXTRAS", "driver_library_error", "explain", "probe"]

CUDA_EXTRAS = ('pip install "xbp[cuda12]" (CUDA 12 driver) or pip install "xbp[cuda13]" (CUDA 13 driver), '
               "which bring CuPy with the CUDA libraries it needs (cupy-cudaXXx[ctk])")

# cudaErrorInsufficientDriver. CuPy 14.2.0 (cupy-cuda12x wheel) on a machine with no NVIDIA driver:
# cupy.zeros(1) raises cupy_backends.cuda.api.runtime.CUDARuntimeError with .status == 35,
# "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"
# (the status attribute: cupy_backends/cuda/api/runtime.pyx:128-135 at v14.2.0).
_INSUFFICIENT_DRIVER = 35


def driver_library_error() -> str | None:
    """Why the NVIDIA driver library cannot be loaded here, or None when it loads.

    CuPy loads the driver API from 'libcuda.so.1' on Linux, 'nvcuda.dll' on Windows
    (cupy_backends/cuda/api/_driver_extern.pxi:144-153 at v14.2.0); the same name is tried here.
    """
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return f"{name} cannot be loaded ({exc})"
    return None


def explain(exc: BaseException) -> str:
    """The cause and the fix for a CUDA error raised while CuPy made or computed its first array."""
    missing = driver_library_error()
    if missing is not None:
        return (f"no NVIDIA driver found: {missing}. CuPy needs an NVIDIA GPU with its driver installed "
                "(`nvidia-smi` lists the GPU when it is there); on a machine without one, choose "
                "XBP_BACKEND=numpy to run on the CPU.")
    if getattr(exc, "status", None) == _INSUFFICIENT_DRIVER:
        return ("the NVIDIA driver is older than the CUDA version this CuPy was built for: update the "
                "driver, or install the CuPy for the driver's CUDA version (`nvidia-smi` shows it): "
                f"{CUDA_EXTRAS}.")
    return (f"CuPy needs an NVIDIA GPU (check `nvidia-smi`), its driver, and the CUDA libraries: "
            f"{CUDA_EXTRAS}; or choose XBP_BACKEND=numpy to run on the CPU.")


def probe(xp: ModuleType, device: Any) -> None:
    """Run what training runs, once, on `device`: a float32 matmul (cuBLAS on a GPU) and an
    elementwise kernel (compiled by NVRTC on CuPy), and read the result back. Raises what they raise."""
    a = xp.reshape(xp.asarray([1.0, 2.0, 3.0, 4.0], dtype=xp.float32, device=device), (2, 2))
    product = a @ a  # [[7, 10], [15, 22]]
    if float(xp.sum(product)) != 54.0:
        raise RuntimeError(f"a 2x2 float32 matmul gave {product!r}, not [[7, 10], [15, 22]]")
    elementwise = xp.where(a > 2.0, xp.exp(a - a), a * 0.5)  # [[0.5, 1], [1, 1]]
    if float(xp.sum(elementwise)) != 3.5:
        raise RuntimeError(f"an elementwise kernel gave {elementwise!r}, not [[0.5, 1], [1, 1]]")
