"""CuPy: NVIDIA GPUs, and what CUDA needs, checked when CuPy is selected so that a missing piece is one
clear error.

CuPy runs each kernel, and makes each new array, on the *current* device of the thread, whatever
`device=` a creation function was given: computing on a chosen GPU happens inside that GPU's scope
(a `cupy.cuda.Device` is itself the `with` block), and `using_backend` restores the current device.
Training uses three things from CUDA: the driver (every call), cuBLAS (`x @ W`) and NVRTC (each
elementwise kernel is compiled at its first use), so a probe runs a matmul and an elementwise kernel
when CuPy loads and on each device chosen; `explain` turns what a failed CUDA call raised into the
fix. The evidence behind each of these choices (CuPy's and array-api-compat's sources) is in
docs/notes/cuda.md. CuPy is imported only when it is selected or its arrays exist.
"""

from __future__ import annotations

import ctypes
import sys
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import array_api_compat
from array_api_compat import is_cupy_array

from xbp.backend.adapter import NO_SCOPE, Adapter

__all__ = ["ADAPTER", "CUDA_EXTRAS", "CupyAdapter", "driver_library_error", "explain"]

CUDA_EXTRAS = ('pip install "xbp[cuda12]" (CUDA 12 driver) or pip install "xbp[cuda13]" (CUDA 13 driver), '
               "which bring CuPy with the CUDA libraries it needs (cupy-cudaXXx[ctk])")

_INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver: also what CuPy raises when there is no driver


def driver_library_error() -> str | None:
    """Why the NVIDIA driver library cannot be loaded here, or None when it loads (the name CuPy loads)."""
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return f"{name} cannot be loaded ({exc})"
    return None


def explain(exc: BaseException) -> str:
    """The cause and the fix for a CUDA error raised while CuPy made or computed its first array.

    "No NVIDIA driver found" when the driver library itself is absent, rather than the CUDA runtime's
    own "driver version is insufficient", which it reports in that case too.
    """
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


def _device_type() -> Any:
    """cupy.cuda.Device where CuPy is imported, else None (this never imports it)."""
    return getattr(getattr(sys.modules.get("cupy"), "cuda", None), "Device", None)


class CupyAdapter(Adapter):
    """CuPy on NVIDIA GPUs: devices are `cupy.cuda.Device`s, labelled 'cuda:N'."""

    name = "cupy"
    module = "cupy"
    install = f"{CUDA_EXTRAS}, on a machine with an NVIDIA GPU and driver"
    aliases = ("cp",)
    spec_heads = ("cuda", "gpu")  # to_device(x, "cuda:1") means CuPy's GPU 1
    probes_at_load = True
    has_current_device = True
    generator_kind = "cupy"

    def __init__(self) -> None:
        self.scope = self._scope

    def owns(self, obj: Any) -> bool:
        device_type = _device_type()
        return device_type is not None and (is_cupy_array(obj) or isinstance(obj, device_type))

    def needs_check(self, dev: Any) -> bool:
        return True  # a GPU loads cuBLAS and NVRTC at the first kernel that needs them

    def hint(self, exc: BaseException) -> str:
        return explain(exc)

    # -- devices

    def device_text(self, spec: Any) -> str:
        text = str(spec).strip()
        return text.split(":", 1)[1] if text.startswith(("cuda:", "gpu:")) else text

    def label(self, dev: Any) -> str:
        return f"cuda:{dev.id}"

    def describe(self, dev: Any) -> str:
        """The GPU's name and memory, e.g. 'NVIDIA H200 (cuda:0, 140 GiB)' (None: the current GPU)."""
        cupy = self.import_module()
        index = cupy.cuda.runtime.getDevice() if dev is None else dev.id
        props = cupy.cuda.runtime.getDeviceProperties(index)
        gib = props["totalGlobalMem"] / 2**30
        return f"{props['name'].decode()} (cuda:{index}, {gib:.0f} GiB)"

    def describe_devices(self, xp: ModuleType) -> list[str]:
        cupy = self.import_module()
        return [self.describe(cupy.cuda.Device(i)) for i in range(cupy.cuda.runtime.getDeviceCount())]

    def select(self, dev: Any) -> None:
        dev.use()  # the thread's current device, where kernels run and new arrays are made

    def current_device_kept(self) -> AbstractContextManager[Any]:
        return self.import_module().cuda.Device()  # the current one; its exit makes it current again

    def _scope(self, where: Any) -> AbstractContextManager[Any]:
        """The `with` block of the GPU that `where` (a CuPy array or device) lives on."""
        if is_cupy_array(where):
            return where.device  # a cupy.cuda.Device: current inside, the previous one after
        device_type = _device_type()
        return where if device_type is not None and isinstance(where, device_type) else NO_SCOPE

    # -- arrays

    def to_host(self, x: Any) -> Any:
        return x.get()

    # -- cupy.random's generators, made and used on their GPU (they remember it and refuse others)

    def generator_device(self, like: Any) -> Any:
        return array_api_compat.device(like)

    def make_generator(self, dev: Any, seed: int | None) -> Any:
        with dev:
            return self.import_module().random.default_rng(seed)

    def uniform(self, generator: Any, shape: tuple[int, ...], like: Any, xp: ModuleType, dev: Any) -> Any:
        with dev:
            draw = generator.random(shape, dtype=xp.float32 if like.dtype == xp.float32 else xp.float64)
        return draw if draw.dtype == like.dtype else xp.astype(draw, like.dtype)

    def generator_state(self, generator: Any) -> Any:
        """The generator's cuRAND states (a device array of bytes), copied: draws advance them in place."""
        bits = generator.bit_generator._state
        with bits.device:  # ndarray.copy makes its copy on the current device
            return bits.copy()

    def set_generator_state(self, generator: Any, state: Any, dev: Any) -> None:
        """Copy the saved bytes back into the generator's states, which continues the stream."""
        with dev:
            bits = generator.bit_generator._state
            if tuple(bits.shape) != tuple(state.shape):
                raise ValueError(f"the saved CuPy generator has {state.shape[0]} bytes of state, "
                                 f"this GPU's has {bits.shape[0]} (another GPU model): resume on "
                                 "the kind of GPU that saved it.")
            bits[...] = self.import_module().asarray(state)


ADAPTER = CupyAdapter()
