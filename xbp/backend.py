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
import copy
import functools
import importlib
import inspect
import os
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from xbp import gpu_checks
from xbp.errors import BackendError, DeviceMismatchError

__all__ = [
    "BACKENDS",
    "CANNOT_TRAIN",
    "DeviceRNG",
    "array_namespace",
    "asarray",
    "batch_taker",
    "device",
    "device_name",
    "device_scope",
    "get_backend",
    "get_device",
    "get_namespace",
    "in_device_scope",
    "is_array",
    "on_params_device",
    "set_backend",
    "subtract_scaled",
    "to_cpu",
    "to_device",
    "to_gpu",
    "using_backend",
]

# backend name -> (module to import, how to install it)
BACKENDS: dict[str, tuple[str, str]] = {
    "numpy": ("numpy", 'pip install numpy (it comes with xbp: pip install "xbp")'),
    "cupy": ("cupy", f"{gpu_checks.CUDA_EXTRAS}, on a machine with an NVIDIA GPU and driver"),
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
    if name == "numpy":
        return _numpy_namespace  # the one namespace array_namespace gives numpy arrays
    try:
        probe = module.asarray([0.0])
        xp = array_api_compat.array_namespace(probe)
    except Exception as exc:  # CUDA errors have no common base class across libraries
        raise BackendError(f"backend {name!r} is installed but cannot make an array: "
                           f"{_device_hint(name, exc)} ({type(exc).__name__}: {exc})") from exc
    if name == "cupy":
        _probe(name, xp, None)
    return xp


_probed: set[tuple[str, str]] = set()  # (backend, device label) where training's kernels ran


def _probe(name: str, xp: ModuleType, dev: Any) -> None:
    """Run a matmul and an elementwise kernel once on a GPU device (None: the current one), so that
    a missing CUDA library is a BackendError with the fix at selection, not at the first step."""
    if not (name == "cupy" or (name == "torch" and str(dev).startswith("cuda"))):
        return  # only GPUs load libraries at the first kernel
    key = (name, "current" if dev is None else _device_label(dev))
    if key in _probed:
        return
    try:
        with device_scope(dev):
            gpu_checks.probe(xp, dev)
    except Exception as exc:  # cuBLAS, NVRTC and driver errors have no common base class
        raise BackendError(f"backend {name!r} can make an array but cannot run what training runs "
                           f"(a float32 matmul through cuBLAS and an elementwise kernel compiled by "
                           f"NVRTC) on {key[1]}: {type(exc).__name__}: {exc}. "
                           f"{_device_hint(name, exc)}") from exc
    _probed.add(key)


def _device_hint(name: str, exc: BaseException) -> str:
    if name == "cupy":
        return gpu_checks.explain(exc)
    if name == "torch":
        return ("Check that this torch is a CUDA build (torch.version.cuda) and that "
                "torch.cuda.is_available(); or choose XBP_BACKEND=numpy to run on the CPU.")
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
    array-api-strict, `1` / `"1"` / `"cuda:1"` for CuPy, `"cuda:0"` for torch. A GPU device is
    checked at once (it exists, and a matmul and an elementwise kernel run on it); on CuPy it also
    becomes the current device of this thread, where CuPy runs kernels and makes new arrays.
    """
    global _selected
    key = _canonical(name)
    xp = get_namespace(key)
    chosen = None if device is None else _resolve_device(key, xp, device)
    if chosen is not None:
        _probe(key, xp, chosen)
    _selected = _Selection(key, chosen)
    if key == "cupy" and chosen is not None:
        chosen.use()  # cupy.cuda.Device.use: runtime.setDevice (cupy/cuda/device.pyx:190-196, v14.2.0)


@contextlib.contextmanager
def using_backend(name: str, device: Any = None) -> Iterator[ModuleType]:
    """Select a backend inside a `with` block and restore the previous one after it, also on errors
    (on CuPy, the chosen GPU is the current device inside the block, and the previous one after it)."""
    global _selected
    previous = _selected
    with _current_device_kept(_canonical(name)):
        set_backend(name, device)
        try:
            yield get_namespace()
        finally:
            _selected = previous


@contextlib.contextmanager
def _current_device_kept(name: str) -> Iterator[None]:
    """Restore CuPy's current device after the block, when CuPy is loaded or is `name` (else a no-op)."""
    if name == "cupy":
        get_namespace("cupy")  # a BackendError with the fix, before anything else
    if "cupy" not in _namespaces:
        yield
        return
    cupy = importlib.import_module("cupy")
    with cupy.cuda.Device():  # Device() is the current one; __exit__ makes it current again
        yield


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
        found = _torch_device(text)
        if found is not None:
            return found
    names = ", ".join(_device_label(d) for d in devices)
    raise BackendError(f"backend {name!r} has no device {spec!r}: choose one of {names} "
                       f"(set XBP_DEVICE or pass device= to xbp.set_backend).")


def _torch_device(text: str) -> Any:
    """The torch device `text` names, or None; a CUDA device must be one torch.cuda.device_count() sees."""
    torch = importlib.import_module("torch")
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        return None
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (dev.index is not None and dev.index >= count):
            seen = "no CUDA device" if count == 0 else f"CUDA devices cuda:0 to cuda:{count - 1}"
            raise BackendError(f"backend 'torch' has no device {text!r}: torch sees {seen} here "
                               f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). "
                               "Choose a device torch.cuda.device_count() counts, or 'cpu'.")
    return dev


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


def _numpy_fast_namespace() -> ModuleType:
    """array-api-compat's numpy namespace, with `sum` and `max` called as the ufunc reductions they end in
    and `astype` and `take` as the array's methods.

    numpy.sum and numpy.max are Python wrappers (`_wrapreduction` in numpy/_core/fromnumeric.py) around
    numpy.add.reduce and numpy.maximum.reduce, numpy.take is one around ndarray.take (`_wrapfunc`),
    and compat's astype checks its device argument first: a microsecond or more a call, which a small
    training step pays several times. These give the same values, dtypes (small integers summed to
    the default integer), shapes and scalar types (tests/test_backend.py compares them); every other
    name is compat's own object. Its `__name__` stays compat's, so is_numpy_namespace still knows it.
    """
    fast = ModuleType(_compat_numpy.__name__, _compat_numpy.__doc__)
    fast.__dict__.update(_compat_numpy.__dict__)
    fast.__dict__.update(sum=_numpy_sum, max=_numpy_max, astype=_numpy_astype, take=_numpy_take)
    return fast


_add_reduce: Callable[..., Any] = np.add.reduce
_maximum_reduce: Callable[..., Any] = np.maximum.reduce


def _numpy_sum(x: Any, /, *, axis: int | tuple[int, ...] | None = None, dtype: Any = None,
               keepdims: bool = False) -> Any:
    """sum(x) over `axis` (all axes for None), as numpy.sum computes it."""
    return _add_reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)


def _numpy_astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    """x as `dtype` (a copy unless copy=False and x already has it), as compat's astype for numpy."""
    if device is not None and device != "cpu":
        return _compat_numpy.astype(x, dtype, copy=copy, device=device)  # its error
    return x.astype(dtype, copy=copy)


def _numpy_take(x: Any, indices: Any, /, *, axis: int | None = None) -> Any:
    """x's entries at `indices` along `axis`, as numpy.take picks them."""
    return x.take(indices, axis=axis)


def _numpy_max(x: Any, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
    """max(x) over `axis` (all axes for None), as numpy.max computes it."""
    return _maximum_reduce(x, axis=axis, keepdims=keepdims)


_compat_numpy = array_api_compat.array_namespace(np.empty(0))
_numpy_namespace = _numpy_fast_namespace()


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
    if type(x) is np.ndarray:
        return "cpu"  # what array_api_compat.device answers for numpy, without its dispatch
    return array_api_compat.device(x)


def device_name(dev: Any = None) -> str:
    """A person's name for a device: the GPU's name and memory for CuPy, the CPU model otherwise.

    Without `dev`, the selected device; on CuPy without a selected device, the current one.
    """
    name = get_backend() if dev is None else _backend_of_device(dev)
    if dev is None:
        dev = get_device()
    if name == "cupy":
        cupy = importlib.import_module("cupy")
        index = cupy.cuda.runtime.getDevice() if dev is None else dev.id
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
    """`x` as a CuPy array on GPU `device` (an id or a cupy.cuda.Device; default: the current one).

    It always means CuPy, whatever library `x` comes from (a torch CUDA tensor too, copied through
    the host); to move a torch tensor to CUDA, use `to_device(x, "torch:cuda:0")`.
    """
    return to_device(x, _cupy_spec(device))


def _cupy_spec(device: Any) -> str:
    """The `to_device` spec of CuPy GPU `device` (an id, a cupy.cuda.Device, or None: the current one)."""
    return "cupy" if device is None else f"cupy:{getattr(device, 'id', device)}"


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


# ---------------------------------------------------------------- the device that computes

_NO_SCOPE = contextlib.nullcontext()


def device_scope(where: Any = None) -> contextlib.AbstractContextManager[Any]:
    """A `with` block in which CuPy computes on the GPU of `where` (a CuPy array or device; None: the
    selected device); for every other library, and for numpy arrays, a block that changes nothing.

    CuPy runs each kernel, and makes each new array, on the *current* device, whatever `device=` a
    creation function was given (array-api-compat ignores it for CuPy's zeros/eye/...:
    common/_helpers.py:709-712 at 1.16), and refuses, or warns about, an array on another GPU
    (cupy/_core/_kernel.pyx:128-145 at v14.2.0). A cupy.cuda.Device is itself the context manager:
    it makes its GPU current and restores the previous one on exit (cupy/cuda/device.pyx:177-188).
    """
    if type(where) is np.ndarray:
        return _NO_SCOPE
    if where is None:
        if _selected.name != "cupy" or _selected.device is None:
            return _NO_SCOPE
        where = get_device()
    module = type(where).__module__
    if module.startswith("cupy.cuda"):  # a cupy.cuda.Device
        return where
    if module.startswith("cupy"):  # a cupy.ndarray: ndarray.device is its cupy.cuda.Device
        return where.device
    return _NO_SCOPE


def on_params_device(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a method of a net (`self.params`), a function whose first argument is a net (`fit`),
    or an optimizer's `update(self, params, grads)` to run inside `device_scope` of the first
    parameter, so that a net on GPU 1 computes on GPU 1.

    Which of the two a method is, is read once from its signature (a second argument named `params`),
    so a call on numpy pays one attribute lookup and one type check: a training step makes three.
    """
    takes_params = list(inspect.signature(method).parameters)[1:2] == ["params"]

    @functools.wraps(method)
    def on_device(self: Any, *args: Any, **kwargs: Any) -> Any:
        params = (args[0] if args else kwargs["params"]) if takes_params else self.params
        for first in params.values():
            if type(first) is np.ndarray:  # the hot path on the CPU
                return method(self, *args, **kwargs)
            with device_scope(first):
                return method(self, *args, **kwargs)
        return method(self, *args, **kwargs)  # no parameters: nothing to follow

    on_device._undecorated = (on_device, method)  # type: ignore[attr-defined]  # for in_device_scope
    return on_device


def in_device_scope(bound: Callable[..., Any]) -> Callable[..., Any]:
    """The bound method `bound` without its `on_params_device` wrapper, for a caller that is already
    inside the parameters' device scope and calls it every step (`fit` calls `gradient` and `update`
    inside the scope it entered once: on numpy each wrapper costs about 2 us of a step). Anything
    else, such as a method a subclass wrapped in a decorator of its own, comes back unchanged."""
    function = getattr(bound, "__func__", None)
    wrapper, method = getattr(function, "_undecorated", (None, None))
    if function is None or function is not wrapper or method is None:
        return bound
    return types.MethodType(method, getattr(bound, "__self__"))  # noqa: B009  # a bound method's object


# ---------------------------------------------------------------- updates in place

_BLOCK_ELEMENTS = 65536  # 256 KiB of float32: a block's temporary stays in the core's cache


def subtract_scaled(param: Any, scale: float, grad: Any) -> Any:
    """param -= scale * grad, in place (a new array on JAX, whose arrays are immutable); returns it.

    The portable expression makes a temporary as large as `param` and reads it back: for a large
    numpy weight matrix (784 x 1000: 3 MB) that round trip through memory costs as much as the
    update itself. numpy arrays are therefore updated in blocks of rows whose temporary fits in the
    cache (the same elementwise arithmetic, so the same bits; tests/test_backend.py checks it).
    """
    if type(param) is np.ndarray and param.size > _BLOCK_ELEMENTS and type(grad) is np.ndarray \
            and param.ndim > 1 and param.shape == grad.shape:
        rows = max(1, _BLOCK_ELEMENTS * param.shape[0] // param.size)
        for start in range(0, param.shape[0], rows):
            param[start:start + rows] -= scale * grad[start:start + rows]
        return param
    param -= scale * grad
    return param


def batch_taker(x: Any, batch_size: int) -> Callable[[Any], Any]:
    """A function `index -> x[index]` along axis 0, for a training loop's batches of `batch_size`
    indices known to be in range.

    On numpy each call writes its rows into one buffer made here, so a batch is valid until the next
    call: the loop's batch stays in the cache instead of being a new array every step (a 100 x 784
    float32 batch is 300 KiB). Elsewhere each call is `xp.take(x, index, axis=0)`: a new array, as
    the standard has no `out=`.
    """
    if type(x) is np.ndarray:
        rows = np.empty((batch_size, *x.shape[1:]), dtype=x.dtype)
        # mode="clip": "raise" would first copy into a buffer of its own (numpy's take with out=);
        # the caller's indices are in range, and ones that were not would be clipped, not read.
        return functools.partial(x.take, axis=0, out=rows, mode="clip")
    xp = array_namespace(x)
    return functools.partial(xp.take, x, axis=0)


# ---------------------------------------------------------------- random numbers where the arrays live

class DeviceRNG:
    """Seeded uniform random numbers in [0, 1), drawn on the device of the array they are for.

    Randomness inside training (dropout masks) is drawn where the arrays live, so a GPU step costs no
    host-to-device copy: CuPy draws with `cupy.random.default_rng(seed)` on the array's GPU, torch on
    CUDA with a `torch.Generator` on the tensor's device, numpy with `numpy.random.default_rng(seed)`.
    Any other library (torch on the CPU too) takes the portable path: a draw on the host with
    `numpy.random.default_rng(seed)`, copied to the array's device (`portable=True` forces that path
    everywhere). The numpy and portable paths give the same numbers for one seed on any machine.
    CuPy's and torch's CUDA generators give other numbers, the same from run to run on the same GPU
    model: CuPy's generator state has 8 * 256 * (number of multiprocessors) entries
    (cupy/random/_bit_generator.pyx:78-81 at v14.2.0), so another GPU model draws another sequence.
    One generator is kept per library and device, each started from `seed` (None: fresh entropy).

    A copy (`copy.deepcopy`, as `Net.astype` and `gradient_check` make) starts every stream afresh
    from `seed`, on every library alike: a GPU generator's state lives on its device behind a lock that
    cannot be copied (cupy/random/_bit_generator.pyx:45), so none is copied, and the copy's first
    numbers are the ones the original drew first.
    """

    def __init__(self, seed: int | None = None, *, portable: bool = False) -> None:
        self.seed = seed
        self.portable = portable
        self._generators: dict[tuple[str, str], Any] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> DeviceRNG:
        clone = DeviceRNG(copy.deepcopy(self.seed, memo), portable=self.portable)
        memo[id(self)] = clone
        return clone

    def uniform(self, shape: tuple[int, ...], *, like: Any) -> Any:
        """An array of `shape` of numbers in [0, 1), with the dtype and on the device of `like`."""
        xp = array_namespace(like)
        if not xp.isdtype(like.dtype, "real floating"):
            raise ValueError(f"DeviceRNG.uniform draws floating-point numbers; `like` has dtype "
                             f"{like.dtype}: pass an array of float32 or float64.")
        shape = tuple(int(n) for n in shape)
        host_dtype = np.float32 if like.dtype == xp.float32 else np.float64
        library = "portable" if self.portable else _library(like)
        if library == "cupy":  # on the GPU, with CuPy's own generator, made and used on that GPU
            dev = array_api_compat.device(like)
            with dev:  # the generator remembers the device it was made on and refuses others
                draw = self._generator(library, dev).random(shape, dtype=host_dtype)
            return draw if draw.dtype == like.dtype else xp.astype(draw, like.dtype)
        if library == "torch" and like.device.type == "cuda":  # on the GPU, with a torch.Generator there
            torch = importlib.import_module("torch")
            return torch.rand(shape, generator=self._generator(library, like.device),
                              dtype=like.dtype, device=like.device)
        if library == "numpy":
            draw = self._generator(library, "cpu").random(shape, dtype=host_dtype)
            return draw if draw.dtype == like.dtype else xp.astype(draw, like.dtype)
        draw = self._generator("portable", "host").random(shape, dtype=host_dtype)
        return xp.asarray(draw, dtype=like.dtype, device=array_api_compat.device(like))

    def _generator(self, library: str, dev: Any) -> Any:
        key = (library, _device_label(dev) if library == "cupy" else str(dev))
        if key not in self._generators:
            self._generators[key] = _new_generator(library, dev, self.seed)
        return self._generators[key]

    # -- checkpoints: the streams continue where they stopped (xbp.resume)

    def state_dict(self) -> dict[str, Any]:
        """The seed and each generator's state, keyed 'library/device': numpy's bit-generator state (a
        dict of ints), CuPy's cuRAND states (a device array of bytes), torch's (a CPU tensor of bytes)."""
        return {"seed": self.seed, "generators": {
            f"{library}/{label}": _generator_state(library, generator)
            for (library, label), generator in self._generators.items()}}

    def load_state_dict(self, state: dict[str, Any], *, like: Any) -> bool:
        """Continue the stream `state_dict` saved, for arrays like `like`. The numpy and portable
        generators are one kind (numpy's PCG64 on the host), CuPy's and torch's CUDA ones two others:
        a stream of another kind cannot continue here, so the draws restart from the seed and this
        returns False."""
        self.seed, self._generators = state["seed"], {}
        library = _library(like)
        if self.portable or library not in ("numpy", "cupy", "torch") \
                or (library == "torch" and like.device.type != "cuda"):
            library = "portable"
        saved = [value for key, value in state["generators"].items()
                 if _kind_of_key(key) == _kind_of_key(f"{library}/")]
        if len(saved) != 1:
            return not state["generators"]  # nothing drawn yet: starting from the seed is continuing
        if library == "torch":
            # torch.Generator.set_state takes the CPU uint8 tensor get_state gave, for a CUDA
            # generator too (torch/csrc/Generator.cpp, THPGenerator_setState: "expected a
            # torch.ByteTensor"; torch/cuda/random.py, set_rng_state, passes it one).
            torch = importlib.import_module("torch")
            bits = np.array(to_cpu(saved[0]), dtype=np.uint8)  # a writable copy for from_numpy
            self._generator(library, like.device).set_state(torch.from_numpy(bits))
            return True
        if library == "cupy":
            dev = array_api_compat.device(like)
            with dev:
                # CuPy keeps a Generator's whole state in the device array `bit_generator._state`
                # (cupy/random/_bit_generator.pyx, _cuRANDGenerator.__init__: one curandState per
                # thread) and its kernels advance it in place (cupy/random/cupy_distributions.cu,
                # curand_pseudo_state): copying those bytes back continues the stream.
                bits = self._generator(library, dev).bit_generator._state
                if tuple(bits.shape) != tuple(saved[0].shape):
                    raise ValueError(f"the saved CuPy generator has {saved[0].shape[0]} bytes of state, "
                                     f"this GPU's has {bits.shape[0]} (another GPU model): resume on "
                                     "the kind of GPU that saved it.")
                bits[...] = importlib.import_module("cupy").asarray(saved[0])
        else:
            self._generator(library, "cpu" if library == "numpy" else "host").bit_generator.state = saved[0]
        return True


def _kind_of_key(key: str) -> str:
    """The kind of generator a `state_dict` key names: 'cupy', 'torch' (CUDA) or 'host' (numpy's PCG64)."""
    library = key.split("/", 1)[0]
    return library if library in ("cupy", "torch") else "host"


def _generator_state(library: str, generator: Any) -> Any:
    """A copy of a generator's whole state: CuPy's cuRAND states (cupy/random/_bit_generator.pyx,
    _cuRANDGenerator.__init__: `self._state`, a device array of bytes), torch's `get_state()` (a CPU
    uint8 tensor; torch.Generator has no `bit_generator`), numpy's bit-generator state (a dict)."""
    if library == "cupy":  # a copy, so that later draws (which advance it in place) leave it as it is
        bits = generator.bit_generator._state
        with bits.device:  # ndarray.copy makes its copy on the current device (cupy/_core/core.pyx:861-866)
            return bits.copy()
    if library == "torch":
        return generator.get_state()
    return generator.bit_generator.state


def _new_generator(library: str, dev: Any, seed: int | None) -> Any:
    """A generator started from `seed`: CuPy's on the current GPU, torch's on `dev`, else numpy's."""
    if library == "cupy":
        return importlib.import_module("cupy").random.default_rng(seed)
    if library == "torch":
        generator = importlib.import_module("torch").Generator(device=dev)
        if seed is None:
            generator.seed()  # fresh entropy, as numpy's default_rng(None)
        else:
            generator.manual_seed(seed)
        return generator
    return np.random.default_rng(seed)


# Read once, when xbp is imported. The backend loads on first use, so `python -m xbp info` can
# still explain what is wrong with it; set_backend() loads and checks at once.
_selected = _Selection(_canonical(os.environ.get("XBP_BACKEND", "")),
                       os.environ.get("XBP_DEVICE", "").strip() or None)
