"""The backend selector, device transfer, and the errors that say what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xbp
from tests._e2e import pythonpath
from xbp import backend
from xbp.errors import BackendError
from xbp.layers import Affine, MulLayer, SoftmaxWithLoss


def test_default_backend_is_numpy_when_the_variable_is_unset_or_empty():
    for value in (None, ""):
        env = {"PATH": ""} if value is None else {"XBP_BACKEND": value}
        out = subprocess.run([sys.executable, "-c", "import xbp; print(xbp.get_backend())"],
                             env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "numpy"


def test_xbp_backend_is_read_at_import():
    code = "import xbp; x = xbp.asarray([1.0]); print(xbp.get_backend(), type(x).__module__)"
    env = {"XBP_BACKEND": "array_api_strict", "PYTHONPATH": pythonpath()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["array_api_strict", "array_api_strict._array_object"]


def test_set_backend_and_using_backend_restore_the_previous_one():
    assert xbp.get_backend() == "numpy"
    with xbp.using_backend("array_api_strict") as xp:
        assert xbp.get_backend() == "array_api_strict"
        assert xbp.array_namespace(xbp.asarray([1.0])) is xp
    assert xbp.get_backend() == "numpy"
    with pytest.raises(RuntimeError, match="boom"), xbp.using_backend("array_api_strict"):
        raise RuntimeError("boom")
    assert xbp.get_backend() == "numpy"
    xbp.set_backend("array_api_strict")
    try:
        assert xbp.get_backend() == "array_api_strict"
    finally:
        xbp.set_backend("numpy")


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(xbp.BackendError, match=r"unknown backend 'nunpy': choose one of numpy, cupy, "
                       r"array_api_strict, torch"):
        xbp.set_backend("nunpy")
    assert xbp.get_backend() == "numpy"


def test_unknown_backend_in_the_environment_fails_at_import_with_the_fix():
    env = {"XBP_BACKEND": "tensorflow", "PYTHONPATH": pythonpath()}
    out = subprocess.run([sys.executable, "-c", "import xbp"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "unknown backend 'tensorflow': choose one of numpy" in out.stderr


def test_missing_cupy_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail, even where it exists
    backend.forget_namespace("cupy")
    with pytest.raises(xbp.BackendError, match=r"cupy is not installed .*pip install \"xbp\[cuda12\]\""
                       ) as caught:
        xbp.set_backend("cupy")
    assert caught.value.reason.startswith("cupy is not installed (") and "Fix" not in caught.value.reason
    assert xbp.get_backend() == "numpy"  # never a silent fallback, and nothing changed


def test_a_backend_that_cannot_make_arrays_is_reported_with_the_reason(monkeypatch):
    class NoDevice:
        @staticmethod
        def asarray(_):
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setitem(sys.modules, "cupy", NoDevice)
    backend.forget_namespace("cupy")
    with pytest.raises(xbp.BackendError, match=r"installed but cannot make an array: .*nvidia-smi.*"
                       r"\(RuntimeError: cudaErrorNoDevice"):
        xbp.get_namespace("cupy")


def test_unknown_device_lists_the_devices():
    with pytest.raises(xbp.BackendError, match=r"no device 'device9': choose one of CPU_DEVICE, device1"):
        xbp.set_backend("array_api_strict", device="device9")
    assert xbp.get_backend() == "numpy"


def test_to_cpu_gives_numpy_from_every_backend(xp):
    x = xbp.asarray([[1.5, 2.5]], dtype="float32")
    host = xbp.to_cpu(x)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    assert host.tolist() == [[1.5, 2.5]]


def test_to_device_moves_between_libraries_and_back(xp):
    x = xbp.asarray(np.arange(6.0).reshape(2, 3))
    to_strict = xbp.to_device(x, "array_api_strict:device1")
    assert str(xbp.device(to_strict)) == "array_api_strict.Device('device1')"
    back = xbp.to_device(to_strict, xbp.device(x))
    assert xbp.array_namespace(back) is xp
    np.testing.assert_array_equal(xbp.to_cpu(back), np.arange(6.0).reshape(2, 3))
    assert isinstance(xbp.to_device(x, "numpy"), np.ndarray)


def test_to_device_within_one_library():
    x = xbp.to_device(np.ones(3), "array_api_strict")
    y = xbp.to_device(x, "device1")
    assert xbp.device(y) != xbp.device(x)
    assert xbp.to_cpu(y).tolist() == [1.0, 1.0, 1.0]


def test_to_gpu_without_cupy_raises_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    backend.forget_namespace("cupy")
    with pytest.raises(xbp.BackendError, match="cupy is not installed"):
        xbp.to_gpu(np.ones(2))


def test_asarray_uses_the_selected_device():
    with xbp.using_backend("array_api_strict", device="device1"):
        x = xbp.asarray([1.0, 2.0], dtype="float32")
    assert str(xbp.device(x)) == "array_api_strict.Device('device1')"
    assert x.dtype == xbp.get_namespace("array_api_strict").float32


def test_mixed_libraries_in_one_layer_raise_device_mismatch(xp):
    W, b = xbp.asarray(np.ones((3, 2))), xbp.asarray(np.zeros(2))
    other = "array_api_strict" if xbp.get_backend() == "numpy" else "numpy"
    x = xbp.to_device(np.ones((4, 3)), other)
    with pytest.raises(xbp.DeviceMismatchError,
                       match=rf"{other} array on \w+ and {xbp.get_backend()} array on .*net\.to_device"):
        Affine(W, b).forward(x)


def test_mixed_devices_in_one_layer_raise_device_mismatch():
    with xbp.using_backend("array_api_strict", device="device1"):
        x = xbp.asarray(np.ones((2, 3)))
    with xbp.using_backend("array_api_strict"):
        t = xbp.asarray([0, 1])
    with pytest.raises(xbp.DeviceMismatchError, match=r"array_api_strict array on device1 and "
                       r"array_api_strict array on CPU_DEVICE"):
        SoftmaxWithLoss().forward(x, t)


def test_mul_layer_with_mixed_libraries_raises_device_mismatch():
    strict = xbp.to_device(np.ones(2), "array_api_strict")
    with pytest.raises(xbp.DeviceMismatchError):
        xbp.array_namespace(np.ones(2), strict)
    assert MulLayer().forward(2, 3) == 6  # Python numbers need no namespace


def test_info_lists_backends_and_why_others_cannot_load():
    out = subprocess.run([sys.executable, "-m", "xbp", "info"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith(f"xbp {xbp.__version__}")
    assert "selected backend: numpy" in out
    assert "numpy" in out and "devices: cpu" in out
    assert "array_api_strict" in out and "device1" in out
    cupy_line = next(line for line in out.splitlines() if line.strip().startswith("cupy"))
    try:
        xbp.get_namespace("cupy")
    except BackendError as exc:  # this machine: info says it cannot load, and why
        assert "cannot load" in cupy_line and exc.reason in cupy_line, (cupy_line, exc.reason)
    else:  # a GPU machine: info lists its devices
        assert "devices:" in cupy_line and "cuda:0" in cupy_line, cupy_line


def test_info_explains_a_device_that_does_not_exist():
    env = {"XBP_BACKEND": "array_api_strict", "XBP_DEVICE": "device9", "PATH": "", "PYTHONPATH": pythonpath()}
    done = subprocess.run([sys.executable, "-m", "xbp", "info"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "selected backend: array_api_strict (cannot use the selected device: backend " \
           "'array_api_strict' has no device 'device9': choose one of CPU_DEVICE, device1" in done.stdout


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint8", "int32", "int64", "float32", "float64"])
def test_the_numpy_fast_path_reduces_as_array_api_compat_does(dtype):
    """xbp's numpy namespace calls sum, max and min as ufunc reductions: the same values, dtypes, shapes."""
    import array_api_compat
    import array_api_compat.numpy as compat

    fast = xbp.get_namespace("numpy")
    assert fast is xbp.array_namespace(np.ones(2)) and fast.sum is not compat.sum
    x = np.arange(24).reshape(2, 3, 4).astype(dtype)
    for axis in (None, 0, 1, -1, (0, 2)):
        for keepdims in (False, True):
            for name in ("sum", "max", "min"):
                expected = getattr(compat, name)(x, axis=axis, keepdims=keepdims)
                got = getattr(fast, name)(x, axis=axis, keepdims=keepdims)
                assert type(got) is type(expected) and got.dtype == expected.dtype, (name, axis, keepdims)
                np.testing.assert_array_equal(got, expected)
    assert fast.sum(x, dtype=np.float64).dtype == compat.sum(x, dtype=np.float64).dtype
    assert fast.sum(np.float32(2) * np.ones((), np.float32)) == 2  # 0-d: over all (no) axes
    with pytest.raises(ValueError):
        fast.max(np.zeros((0,), np.float32))  # as numpy.max: no maximum of nothing
    with pytest.raises(ValueError):
        fast.min(np.zeros((0,), np.float32))
    for target in (np.bool_, np.int32, np.float32, np.float64):
        expected, got = compat.astype(x, target), fast.astype(x, target)
        assert got.dtype == expected.dtype and got is not x
        np.testing.assert_array_equal(got, expected)
    assert fast.astype(x, x.dtype, copy=False) is compat.astype(x, x.dtype, copy=False) is x
    rows = np.asarray([1, 0, 1])
    for axis in (0, 1, -1):
        np.testing.assert_array_equal(fast.take(x, rows, axis=axis), compat.take(x, rows, axis=axis))
    np.testing.assert_array_equal(fast.take(x[0, 0], rows), compat.take(x[0, 0], rows))
    try:  # another device: compat's own answer (array-api-compat >= 1.12 raises, 1.11 ignores it)
        elsewhere = compat.astype(x, np.float32, device="device1")
    except ValueError:
        with pytest.raises(ValueError):
            fast.astype(x, np.float32, device="device1")
    else:
        np.testing.assert_array_equal(fast.astype(x, np.float32, device="device1"), elsewhere)
    assert array_api_compat.is_numpy_namespace(fast)


@pytest.mark.parametrize("shape", [(784, 1000), (1000,), (300, 7, 40), (70, 50)])
def test_subtract_scaled_gives_the_bits_of_the_plain_update(xp, shape):
    """The blocked numpy update of large arrays, and the portable `param -= scale * grad` elsewhere,
    agree bit for bit with the plain expression."""
    rng = np.random.default_rng(0)
    host_param = rng.standard_normal(shape, dtype=np.float32)
    host_grad = rng.standard_normal(shape, dtype=np.float32)
    expected = host_param - np.float32(0.1) * host_grad
    param, grad = xbp.asarray(host_param), xbp.asarray(host_grad)
    result = backend.subtract_scaled(param, 0.1, grad)
    assert (result is param) == (xbp.get_backend() != "jax.numpy")  # in place, but on immutable arrays
    np.testing.assert_array_equal(xbp.to_cpu(result), expected)


def test_batch_taker_gives_the_rows_of_take_and_writes_over_the_last_batch_on_numpy(xp):
    host = np.arange(60, dtype=np.float32).reshape(10, 2, 3)
    take = backend.batch_taker(xbp.asarray(host), 4)
    first, second = np.asarray([7, 0, 7, 3]), np.asarray([9, 1, 2, 2])
    batch = take(xbp.asarray(first))
    np.testing.assert_array_equal(xbp.to_cpu(batch), host[first])
    again = take(xbp.asarray(second))
    np.testing.assert_array_equal(xbp.to_cpu(again), host[second])
    assert (again is batch) == (xbp.get_backend() == "numpy")  # the standard has no out=: new elsewhere
    assert xbp.device(again) == xbp.device(xbp.asarray(host))


@pytest.mark.parametrize("name", ["dask.array", "dask", "sparse", "ndonnx"])
def test_a_library_xbp_cannot_train_on_is_refused_with_the_reason(name):
    with pytest.raises(xbp.BackendError, match=r"is not supported: .+ Choose numpy"):
        xbp.set_backend(name)
    assert xbp.get_backend() == "numpy"


def test_jax_without_64_bit_arrays_refuses_float64_instead_of_making_float32():
    pytest.importorskip("jax", reason="jax is not installed (pip install -r backends/jax.txt)")
    code = ("import warnings, xbp; from xbp.nets import TwoLayerNet; warnings.simplefilter('ignore'); "
            "xbp.set_backend('jax.numpy'); TwoLayerNet(2, 3, 2, dtype='float64')")
    env = {"JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu", "PYTHONPATH": pythonpath()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "made an array of float32 where float64 was asked for" in out.stderr
    assert "jax_enable_x64" in out.stderr


def test_each_adapter_knows_its_arrays_and_devices(xp):
    x = xbp.asarray([1.0, 2.0], dtype="float32")
    assert backend.library_of(x) == xbp.get_backend() == backend.adapter_of(x).name
    assert backend.array_namespace(x) is xp
    if not isinstance(xbp.device(x), str):  # numpy's device is the string 'cpu'
        assert backend.adapter_of(xbp.device(x)) is backend.adapter_of(x)
    label = backend.device_label(xbp.device(x))  # CuPy lists its GPUs' names, with their labels
    assert any(label in listed for listed in backend.get_adapter(xbp.get_backend()).describe_devices(xp))
    assert backend.adapter_of(3.0) is backend.adapter_of("cpu") is backend.registry.PORTABLE


def test_a_backend_error_keeps_its_reason_apart_from_the_fix():
    with pytest.raises(xbp.BackendError) as caught:
        xbp.set_backend("nunpy")
    assert caught.value.reason == "unknown backend 'nunpy'"
    with pytest.raises(xbp.BackendError) as caught:
        xbp.set_backend("array_api_strict", device="device9")
    assert caught.value.reason == "array_api_strict has no device 'device9'"
    assert xbp.BackendError("plain").reason == "plain"


def test_only_the_adapters_import_an_array_library():
    """What differs between libraries lives in xbp/backend/<library>.py; the rest of xbp asks them
    (numpy, the host, is also imported where data is made on the host; NCCL's calls import CuPy)."""
    import ast
    from pathlib import Path

    package = Path(backend.__file__).parent
    adapters = {package / f"{name}.py" for name in backend.registry._ADAPTER_MODULES}
    libraries = {"cupy", "torch", "jax", "array_api_strict"}
    for path in sorted(package.parent.rglob("*.py")):
        if path in adapters:
            continue
        banned = libraries | ({"numpy"} if path.parent == package else set())
        allowed = {"cupy"} if path.name == "distributed.py" else set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                assert top not in banned - allowed, f"{path.relative_to(package.parent)} imports {name}"


def test_the_suite_tests_the_same_whatever_xbp_backend_the_user_exported():
    """The README has GPU users export XBP_BACKEND=cupy: the tests pick their own backends anyway."""
    here = "tests/test_backend.py::test_set_backend_and_using_backend_restore_the_previous_one"
    env = {**os.environ, "XBP_BACKEND": "array_api_strict", "XBP_DEVICE": "device1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", here],
                          cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-2000:]
