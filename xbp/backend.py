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
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from xbp.errors import BackendError, DeviceMismatchError

__all__ = [
    "BACKENDS",
    "CANNOT_TRAIN",
    "DeviceRNG",
    "array_namespace",
    "asarray",
    "device",
    "device_name",
    "get_backend",
    "get_device",
    "get_namespace",
    "is_array",
    "set_backend",
    "to_cpu",
    "to_device",
    "to_gpu",
    "using_backend",
]

# backend name -> (module to import, how to install it)
BACKENDS: dict[str, tuple[str, str]] = {
    "numpy": ("numpy", 'pip install numpy (it comes with xbp: pip install "xbp")'),
    "cupy": (
        "cupy",
        'pip install "xbp[cuda12]" (CUDA 12) or pip install "xbp[cuda13]" (CUDA 13), '
        "on a machine with an NVIDIA GPU and driver",
    ),
    "array_api_strict": ("array_api_strict", 'pip install "xbp[test]" (or: pip install array-api-strict)'),
    "torch": ("torch", "pip install torch (see pytorch.org for the CUDA build)"),
    "jax.numpy": ("jax.numpy", 'pip install jax (or "jax[cuda13]" for an NVIDIA GPU)'),
}
# Libraries array-api-compat knows that xbp cannot train on: selecting one says why.
CANNOT_TRAIN: dict[str, str] = {
    "dask.array": ("its arrays are lazy: every optimizer step adds to each parameter's task graph "
                   "(388 tasks in W1 after 10 steps of a small net, 1,558 after 40), which is "
                   "recomputed whenever a value is read, so training slows down step after step"),
    "sparse": "sparse arrays are for data that is mostly zeros, and xbp has never been verified on them",
    "ndonnx": "its arrays build ONNX graphs, and xbp has never been verified on them",
}
_ALIASES = {"": "numpy", "np": "numpy", "cp": "cupy", "strict": "array_api_strict",
            "array-api-strict": "array_api_strict", "pytorch": "torch", "jax": "jax.numpy",
            "dask": "dask.array"}


@dataclass(frozen=True)
class _Selection:
    name: str
    device: Any = None  # a device of that backend (object or its name), None for its default


_namespaces: dict[str, ModuleType] = {}  # loaded backends, by name


def _canonical(name: str) -> str:
    key = name.strip()
    key = _ALIASES.get(key.lower(), key)
    if key in CANNOT_TRAIN:
        raise BackendError(f"backend {key!r} is not supported: {CANNOT_TRAIN[key]}. "
                           "Choose numpy (CPU), cupy (NVIDIA GPU), torch or jax.numpy instead.")
    if key not in BACKENDS:
        valid = ", ".join(BACKENDS)
        raise BackendError(f"unknown backend {name!r}: choose one of {valid} "
                           f"(set XBP_BACKEND or call xbp.set_backend(name)).")
    return key


def get_namespace(name: str | None = None) -> ModuleType:
    """The Array API namespace of backend `name` (default: the selected backend), loading it once."""
    key = _selected.name if name is None else _canonical(name)
    if key not in _namespaces:
        _namespaces[key] = _load(key)
    return _namespaces[key]


def _load(name: str) -> ModuleType:
    module_name, how_to_install = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {name!r} cannot load: {module_name} is not installed "
                           f"({exc}). Fix: {how_to_install}.") from exc
    try:
        probe = module.asarray([0.0])
        return array_api_compat.array_namespace(probe)
    except Exception as exc:  # CUDA errors have no common base class across libraries
        raise BackendError(f"backend {name!r} is installed but cannot make an array: "
                           f"{type(exc).__name__}: {exc}. {_device_hint(name)}") from exc


def _device_hint(name: str) -> str:
    if name == "cupy":
        return ("It needs an NVIDIA GPU with a driver new enough for the installed CuPy "
                "(check `nvidia-smi`; use xbp[cuda12] for CUDA 12 drivers, xbp[cuda13] for CUDA 13), "
                "or choose XBP_BACKEND=numpy to run on the CPU.")
    return "Choose another backend, e.g. XBP_BACKEND=numpy."


def get_backend() -> str:
    """The name of the selected backend, where new arrays are made."""
    return _selected.name


def get_device() -> Any:
    """The selected device (a device object of the selected backend), or None for its default."""
    if _selected.device is None:
        return None
    return _resolve_device(_selected.name, get_namespace(), _selected.device)


def set_backend(name: str, device: Any = None) -> None:
    """Select the backend (and optionally its device) where new arrays are made.

    `device` is a device object of that backend, or a string naming one: `"device1"` for
    array-api-strict, `1` / `"1"` / `"cuda:1"` for CuPy, `"cuda:0"` for torch.
    """
    global _selected
    key = _canonical(name)
    xp = get_namespace(key)
    _selected = _Selection(key, None if device is None else _resolve_device(key, xp, device))


@contextlib.contextmanager
def using_backend(name: str, device: Any = None) -> Iterator[ModuleType]:
    """Select a backend inside a `with` block and restore the previous one after it, also on errors."""
    global _selected
    previous = _selected
    set_backend(name, device)
    try:
        yield get_namespace()
    finally:
        _selected = previous


def _resolve_device(name: str, xp: ModuleType, spec: Any) -> Any:
    """Find the device of backend `name` that `spec` names (a device object, its name, or its id)."""
    devices = devices_of(name, xp)
    text = str(spec).strip()
    if text.startswith(("cuda:", "gpu:")) and name == "cupy":
        text = text.split(":", 1)[1]
    for candidate in devices:
        if candidate == spec or _device_label(candidate) == text or str(candidate) == text:
            return candidate
        if text.isdigit() and getattr(candidate, "id", None) == int(text):
            return candidate
        if text.isdigit() and getattr(candidate, "index", None) == int(text):
            return candidate
    if name == "torch":  # torch lists only the devices it has made; accept any it can parse
        try:
            return importlib.import_module("torch").device(text)
        except (RuntimeError, TypeError):
            pass
    names = ", ".join(_device_label(d) for d in devices)
    raise BackendError(f"backend {name!r} has no device {spec!r}: choose one of {names} "
                       f"(set XBP_DEVICE or pass device= to xbp.set_backend).")


def devices_of(name: str, xp: ModuleType) -> list[Any]:
    """The devices backend `name` can make arrays on."""
    if name == "torch":  # torch's own list probes deprecated device types, with warnings
        torch = importlib.import_module("torch")
        cuda = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return [torch.device("cpu"), *cuda]
    return [d for d in xp.__array_namespace_info__().devices() if d is not None]  # JAX lists None


def _device_label(dev: Any) -> str:
    """A short name for a device: 'cpu', 'device1', 'cuda:0'."""
    if type(dev).__module__.startswith("array_api_strict"):
        return str(dev).split("'")[1]
    if type(dev).__module__.startswith("cupy"):
        return f"cuda:{dev.id}"
    return str(dev)


# ---------------------------------------------------------------- asking arrays where they live

def is_array(x: Any) -> bool:
    """True for an array of any library array-api-compat knows (not for Python numbers)."""
    return array_api_compat.is_array_api_obj(x)


def array_namespace(*arrays: Any) -> ModuleType:
    """The namespace shared by `arrays` (Python numbers and None are ignored).

    Raises DeviceMismatchError when the arrays come from different libraries or devices.
    """
    for a in arrays:
        if type(a) is not np.ndarray:
            break
    else:
        if arrays:
            return _numpy_namespace  # the hot path: numpy arrays all live on the one CPU device
    present = [a for a in arrays if a is not None and not isinstance(a, (int, float, complex))]
    if not present:
        raise TypeError("array_namespace() needs at least one array; got only Python numbers.")
    if all(type(a) is np.ndarray for a in present):
        return _numpy_namespace
    try:
        xp = array_api_compat.array_namespace(*present)
    except TypeError as exc:
        if len({_library(a) for a in present}) > 1:
            raise DeviceMismatchError(_mismatch_message(present)) from exc
        raise
    first = array_api_compat.device(present[0])
    if any(array_api_compat.device(a) != first for a in present[1:]):
        raise DeviceMismatchError(_mismatch_message(present))
    return xp


_numpy_namespace = array_api_compat.array_namespace(np.empty(0))


def _describe(x: Any) -> str:
    return f"{_library(x)} array on {_device_label(array_api_compat.device(x))}"


def _mismatch_message(arrays: list[Any]) -> str:
    seen = list(dict.fromkeys(_describe(a) for a in arrays))
    return (f"arrays on different libraries or devices were combined: {' and '.join(seen)}. "
            "Move them to one device first, e.g. net.to_device(xbp.device(x)) or "
            "x = xbp.to_device(x, xbp.device(net.params['W1'])).")


def _library(x: Any) -> str:
    """The backend name of an array: 'numpy', 'cupy', 'torch', 'array_api_strict', ..."""
    if isinstance(x, np.ndarray):
        return "numpy"
    module = type(x).__module__.split(".")[0]
    return _LIBRARY_OF_MODULE.get(module, module)


_LIBRARY_OF_MODULE = {"jax": "jax.numpy", "jaxlib": "jax.numpy", "dask": "dask.array"}


def device(x: Any) -> Any:
    """The device `x` lives on ('cpu' for numpy arrays)."""
    return array_api_compat.device(x)


def device_name(dev: Any = None) -> str:
    """A person's name for a device: the GPU's name and memory for CuPy, the CPU model otherwise."""
    name = get_backend() if dev is None else _backend_of_device(dev)
    if dev is None:
        dev = get_device()
    if name == "cupy":
        cupy = importlib.import_module("cupy")
        index = 0 if dev is None else dev.id
        props = cupy.cuda.runtime.getDeviceProperties(index)
        gib = props["totalGlobalMem"] / 2**30
        return f"{props['name'].decode()} (cuda:{index}, {gib:.0f} GiB)"
    if name == "torch" and dev is not None and str(dev).startswith("cuda"):
        torch = importlib.import_module("torch")
        return f"{torch.cuda.get_device_name(dev)} ({dev})"
    label = "cpu" if dev is None else _device_label(dev)
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
        return "numpy" if dev == "cpu" else get_backend()
    module = type(dev).__module__.split(".")[0]
    module = _LIBRARY_OF_MODULE.get(module, module)  # JAX's devices are jaxlib objects
    return module if module in BACKENDS else get_backend()


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
        device = _resolve_device(get_backend(), xp, device)
    if is_array(obj) and _library(obj) != get_backend():
        obj = to_cpu(obj)
    return checked_dtype(xp.asarray(obj, dtype=dtype, device=device), dtype)


def checked_dtype(x: Any, dtype: Any) -> Any:
    """`x`, after checking that it has the `dtype` asked for (None: any); JAX without 64-bit arrays
    makes float32 where float64 is asked for, which would silently change what a check measures."""
    if dtype is not None and x.dtype != dtype:
        asked = getattr(dtype, "__name__", dtype)
        raise BackendError(f"{_library(x)} made an array of {x.dtype} where {asked} was asked for. "
                           "For jax.numpy, enable 64-bit arrays before making any: "
                           "jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1.")
    return x


def to_cpu(x: Any) -> np.ndarray:
    """A numpy copy of `x` on the host (numpy arrays are returned as they are)."""
    if isinstance(x, np.ndarray):
        return x
    library = _library(x)
    if library == "cupy":
        return x.get()
    if library == "torch":
        return x.detach().cpu().numpy()
    if not is_array(x):
        return np.asarray(x)
    try:
        return np.asarray(x)
    except (RuntimeError, TypeError, ValueError):  # array-api-strict refuses __array__ off its CPU
        return np.array(np.from_dlpack(x), copy=True)


def to_device(x: Any, device: Any) -> Any:
    """`x` moved to `device`, which may live in another library.

    `device` is a device object (as `xbp.device(y)` returns), or a string: a device of x's own
    library ("device1", "cuda:0"), "cpu" (numpy), "cuda" / "cuda:N" (CuPy), or
    "<backend>:<device>" ("torch:cuda:0", "array_api_strict:device1").
    """
    target, dev = _target_of(x, device)
    if target == _library(x):
        if dev is None or array_api_compat.device(x) == dev:
            return x
        return array_api_compat.to_device(x, dev)
    xp = get_namespace(target)
    return xp.asarray(to_cpu(x), device=dev)


def to_gpu(x: Any, device: Any = None) -> Any:
    """`x` as a CuPy array on GPU `device` (default: the current CUDA device)."""
    return to_device(x, "cuda" if device is None else f"cupy:{getattr(device, 'id', device)}")


def _target_of(x: Any, spec: Any) -> tuple[str, Any]:
    """(backend name, device object or None) that a device spec names, seen from array `x`."""
    if not isinstance(spec, str):
        name = _backend_of_device(spec) if not isinstance(spec, int) else _library(x)
        return name, _resolve_device(name, get_namespace(name), spec)
    own = _library(x)
    with contextlib.suppress(BackendError):
        return own, _resolve_device(own, get_namespace(own), spec)
    head, _, rest = spec.partition(":")
    if head in BACKENDS or head.lower() in _ALIASES:
        name = _canonical(head)
        return name, (_resolve_device(name, get_namespace(name), rest) if rest else None)
    if spec == "cpu":
        return "numpy", None
    if head in ("cuda", "gpu"):
        xp = get_namespace("cupy")
        return "cupy", _resolve_device("cupy", xp, rest) if rest else None
    raise BackendError(f"unknown device {spec!r}: use a device object (xbp.device(y)), 'cpu', "
                       "'cuda:N', or '<backend>:<device>' such as 'array_api_strict:device1'.")


# ---------------------------------------------------------------- random numbers where the arrays live

class DeviceRNG:
    """Seeded uniform random numbers in [0, 1), drawn on the device of the array they are for.

    Randomness inside training (dropout masks) is drawn where the arrays live, so a GPU step costs no
    host-to-device copy: CuPy draws with `cupy.random.default_rng(seed)` on the array's GPU, numpy with
    `numpy.random.default_rng(seed)`. Any other library takes the portable path: a draw on the host with
    `numpy.random.default_rng(seed)`, copied to the array's device (`portable=True` forces that path
    everywhere). The numpy and portable paths give the same numbers for one seed; CuPy's generator
    gives other numbers, the same from run to run. One generator is kept per library and device, each
    started from `seed` (None: fresh entropy).
    """

    def __init__(self, seed: int | None = None, *, portable: bool = False) -> None:
        self.seed = seed
        self.portable = portable
        self._generators: dict[tuple[str, str], Any] = {}

    def uniform(self, shape: tuple[int, ...], *, like: Any) -> Any:
        """An array of `shape` of numbers in [0, 1), with the dtype and on the device of `like`."""
        xp = array_namespace(like)
        if not xp.isdtype(like.dtype, "real floating"):
            raise ValueError(f"DeviceRNG.uniform draws floating-point numbers; `like` has dtype "
                             f"{like.dtype}: pass an array of float32 or float64.")
        shape = tuple(int(n) for n in shape)
        host_dtype = np.float32 if like.dtype == xp.float32 else np.float64
        library = "portable" if self.portable else _library(like)
        if library == "cupy":  # on the GPU, with CuPy's own generator
            dev = array_api_compat.device(like)
            with dev:
                draw = self._generator(library, dev).random(shape, dtype=host_dtype)
            return draw if draw.dtype == like.dtype else xp.astype(draw, like.dtype)
        if library == "numpy":
            draw = self._generator(library, "cpu").random(shape, dtype=host_dtype)
            return draw if draw.dtype == like.dtype else xp.astype(draw, like.dtype)
        draw = self._generator("portable", "host").random(shape, dtype=host_dtype)
        return xp.asarray(draw, dtype=like.dtype, device=array_api_compat.device(like))

    def _generator(self, library: str, dev: Any) -> Any:
        key = (library, _device_label(dev) if library == "cupy" else str(dev))
        if key not in self._generators:
            if library == "cupy":
                self._generators[key] = importlib.import_module("cupy").random.default_rng(self.seed)
            else:
                self._generators[key] = np.random.default_rng(self.seed)
        return self._generators[key]


# Read once, when xbp is imported. The backend loads on first use, so `python -m xbp info` can
# still explain what is wrong with it; set_backend() loads and checks at once.
_selected = _Selection(_canonical(os.environ.get("XBP_BACKEND", "")),
                       os.environ.get("XBP_DEVICE", "").strip() or None)
