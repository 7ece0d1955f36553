"""The CUDA paths' CPU side: device scopes, copies of random generators, the selection-time probe,
what a machine without a driver is told, and torch devices checked when chosen.

Where a test needs CuPy or a CUDA device it says so in its skip; the CuPy cases of the `xp` fixture
run these on a GPU (ci/gpu).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import threading
import types

import numpy as np
import pytest

import xbp
from xbp import backend
from xbp.backend import cupy as cuda
from xbp.backend.adapter import probe_kernels
from xbp.gradcheck import gradient_check
from xbp.layers import SoftmaxWithLoss
from xbp.nets import MultiLayerNet, TwoLayerNet
from xbp.optimizers import SGD
from xbp.training import evaluate, fit


def test_device_scope_changes_nothing_off_cupy(xp):
    x = xbp.asarray([1.0, 2.0], dtype="float32")
    scope = backend.device_scope(x)
    if backend.library_of(x) != "cupy":
        assert scope is backend.NO_SCOPE and backend.adapter_of(x).scope is None
    with scope:
        assert float(xp.sum(x * 2.0)) == 6.0
    assert backend.device_scope(None) is backend.NO_SCOPE or xbp.get_backend() == "cupy"
    assert backend.device_scope(np.zeros(1)) is backend.NO_SCOPE


def test_net_methods_fit_and_the_optimizer_keep_their_results_on_the_nets_device(xp):
    x = xbp.asarray(np.random.default_rng(0).standard_normal((20, 4)), dtype="float32")
    t = xbp.asarray(np.arange(20) % 3)
    net = TwoLayerNet(4, 5, 3, weight_init_std=0.5, seed=0)
    grads = net.gradient(x, t)
    SGD(lr=0.1).update(net.params, grads)
    assert all(xbp.device(v) == net.device for v in (*grads.values(), *net.params.values()))
    assert xbp.device(net.loss(x, t)) == net.device
    history = fit(net, SGD(lr=0.1), (x, t), epochs=1, batch_size=10, progress=False)
    assert len(history["loss"]) == 1 and 0.0 <= evaluate(net, x, t) <= 1.0


def test_on_params_device_passes_results_and_errors_through():
    class Holder:
        def __init__(self) -> None:
            self.params = {"W": np.ones(2)}

        @backend.on_params_device
        def double(self, value):
            """Twice value."""
            if value is None:
                raise ValueError("no value")
            return 2 * value

    assert Holder().double(3) == 6 and Holder.double.__doc__ == "Twice value."
    with pytest.raises(ValueError, match="no value"):
        Holder().double(None)


def test_without_device_scope_skips_only_the_on_params_device_wrapper(monkeypatch):
    """fit calls `gradient` and `update` through without_device_scope: the same method without entering
    the scope again; a method wrapped by a decorator of a subclass's own keeps that decorator.
    array-api-strict's adapter is given a scope that counts, standing in for CuPy's."""
    entered = []
    x = xbp.to_device(np.ones((2, 4), np.float32), "array_api_strict")
    monkeypatch.setattr(backend.adapter_of(x), "scope",
                        lambda where: entered.append(where) or backend.NO_SCOPE)
    net = TwoLayerNet(4, 3, 2, seed=0)
    net.params = {key: xbp.to_device(value, "array_api_strict") for key, value in net.params.items()}
    t = xbp.to_device(np.array([0, 1]), "array_api_strict")
    net.gradient(x, t)
    assert len(entered) == 1  # the decorated method enters the scope
    grads = backend.without_device_scope(net.gradient)(x, t)
    assert len(entered) == 1 and set(grads) == set(net.params)  # the same method, not entering it

    calls = []

    class Logged(TwoLayerNet):
        @functools.wraps(TwoLayerNet.gradient)
        def gradient(self, x, t):
            calls.append("logged")
            return super().gradient(x, t)

    logged = Logged(4, 3, 2, seed=0)
    assert backend.without_device_scope(logged.gradient) == logged.gradient  # its own decorator stays
    backend.without_device_scope(logged.gradient)(np.ones((2, 4), np.float32), np.array([0, 1]))
    assert calls == ["logged"]
    plain = object.__str__
    assert backend.without_device_scope(plain) is plain


def test_a_copy_of_a_device_rng_restarts_from_the_seed(xp):
    rng = backend.DeviceRNG(seed=7)
    like = xbp.asarray(np.zeros((3, 4)), dtype="float32")
    first = xbp.to_cpu(rng.uniform((3, 4), like=like))
    rng.uniform((3, 4), like=like)
    clone = copy.deepcopy(rng)
    np.testing.assert_array_equal(xbp.to_cpu(clone.uniform((3, 4), like=like)), first)
    assert clone.seed == 7 and clone.portable is rng.portable


def test_a_device_rng_copies_without_copying_a_generator_that_holds_a_lock():
    """CuPy's generators hold a threading.Lock (docs/notes/cuda.md), which neither pickle nor deepcopy
    can copy; a DeviceRNG never copies its generators."""
    rng = backend.DeviceRNG(seed=3)

    class LockedGenerator:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    rng._generators[("cupy", "cuda:0")] = LockedGenerator()
    with pytest.raises(TypeError, match="lock"):
        copy.deepcopy(LockedGenerator())
    clone = copy.deepcopy(rng)
    assert clone._generators == {} and clone.seed == 3


def test_a_device_rng_saves_the_state_of_a_torch_generator():
    """On torch CUDA, DeviceRNG draws with a torch.Generator, which has no `bit_generator`: its state
    is `get_state()`, a CPU uint8 tensor, on every device (docs/notes/cuda.md).
    A CPU torch.Generator stands in for the CUDA one under its key (the same Python class and methods)."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -r backends/torch.txt)")
    rng = backend.DeviceRNG(seed=3)
    generator = torch.Generator().manual_seed(3)
    rng._generators[("torch", "cuda:0")] = generator
    state = rng.state_dict()
    saved = state["generators"]["torch/cuda:0"]
    expected = torch.rand(5, generator=generator)
    assert saved.dtype == torch.uint8 and saved.device.type == "cpu"
    generator.set_state(torch.from_numpy(xbp.to_cpu(saved).copy()))  # as load_state_dict restores it
    assert torch.equal(torch.rand(5, generator=generator), expected)
    with xbp.using_backend("numpy"):  # a host stream cannot continue a torch CUDA one: restart from the seed
        assert not backend.DeviceRNG(None).load_state_dict(state, like=np.zeros(1, dtype=np.float32))


def test_astype_and_gradient_check_work_after_dropout_drew(xp):
    net = MultiLayerNet(6, [5, 5], 3, use_dropout=True, dropout_ratio=0.3, seed=1, dtype="float64")
    rng = np.random.default_rng(2)
    x = xbp.asarray(rng.standard_normal((4, 6)), dtype="float64")
    for key in ("b1", "b2", "b3"):  # a sample whose every unit dropped reaches Relu2 at b2: off its kink
        net.params[key] = xbp.asarray(0.5 + rng.random(net.params[key].shape), dtype="float64")
    t = xbp.asarray(np.array([0, 1, 2, 1]))
    net.gradient(x, t)  # Dropout drew its masks
    clone = net.astype("float32")
    assert clone.params["W1"].dtype == xp.float32 and net.params["W1"].dtype == xp.float64
    diffs = gradient_check(net, x, t)
    assert max(diffs.values()) < 1e-7, diffs


def test_numerical_gradient_checks_the_labels_at_its_first_loss_only(xp):
    class Counting(SoftmaxWithLoss):
        checked = 0

        def forward(self, x, t):
            Counting.checked += self.check_labels
            return super().forward(x, t)

    net = TwoLayerNet(3, 2, 2, weight_init_std=0.5, seed=0, dtype="float64")
    net.last_layer = Counting()
    x = xbp.asarray(np.ones((2, 3)), dtype="float64")
    net.numerical_gradient(x, xbp.asarray(np.array([0, 1])))
    assert Counting.checked == 1 and net.last_layer.check_labels
    with pytest.raises(ValueError, match="label 2 is out of range"):
        net.numerical_gradient(x, xbp.asarray(np.array([0, 2])))
    assert net.last_layer.check_labels  # restored after the error too


def test_the_probe_runs_what_training_runs(xp):
    probe_kernels(xp, xbp.get_device())  # a working backend: no error


class _WrongBy(types.ModuleType):
    """A namespace whose `op` gives a wrong answer: what a broken GPU library would do."""

    def __init__(self, xp, op: str) -> None:
        super().__init__(xp.__name__)
        self.__dict__.update(xp.__dict__)
        good = getattr(xp, op)
        setattr(self, op, lambda *args, **kwargs: good(*args, **kwargs) + 1)


@pytest.mark.parametrize(("op", "message"), [("matmul", r"a 2x2 float32 matmul gave"),
                                             ("exp", r"an elementwise kernel gave")])
def test_the_probe_refuses_a_library_that_computes_wrong(op, message):
    xp = xbp.get_namespace("numpy")
    if op == "matmul":  # the probe multiplies with @: make the arrays' @ wrong through asarray
        class Off(np.ndarray):
            def __matmul__(self, other):
                return np.asarray(np.matmul(np.asarray(self), np.asarray(other))) + 1

        broken = _WrongBy(xp, "asarray")
        broken.asarray = lambda *a, **k: np.asarray(xp.asarray(*a, **k)).view(Off)
        broken.reshape = lambda x, shape: np.reshape(x, shape).view(Off)
    else:
        broken = _WrongBy(xp, op)
    with pytest.raises(RuntimeError, match=message):
        probe_kernels(broken, "cpu")


def test_a_machine_without_the_driver_library_is_told_no_driver_was_found():
    if cuda.driver_library_error() is None:
        pytest.skip("an NVIDIA driver library loads here: this test is for machines without one")
    message = cuda.explain(RuntimeError("cudaErrorInsufficientDriver"))
    assert message.startswith("no NVIDIA driver found: libcuda.so.1 cannot be loaded")
    assert "XBP_BACKEND=numpy" in message


def test_real_cupy_without_a_driver_says_no_driver_was_found(monkeypatch):
    """CuPy 14.2 here, without a driver, raises cudaErrorInsufficientDriver at its first array."""
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed here")
    if cuda.driver_library_error() is None:
        pytest.skip("an NVIDIA driver library loads here: this test is for machines without one")
    backend.forget_namespace("cupy")
    with pytest.raises(xbp.BackendError, match=r"cannot make an array: no NVIDIA driver found: "
                       r"libcuda.so.1 cannot be loaded .*cudaErrorInsufficientDriver"):
        xbp.get_namespace("cupy")


def test_a_torch_cuda_device_is_checked_when_chosen():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed here")
    import torch

    count = torch.cuda.device_count()
    with pytest.raises(xbp.BackendError, match=rf"backend 'torch' has no device 'cuda:{count}': torch "
                       "sees (no CUDA device|CUDA devices cuda:0 to)"):
        xbp.set_backend("torch", device=f"cuda:{count}")
    assert xbp.get_backend() == "numpy"


def test_to_gpu_always_means_cupy(monkeypatch):
    arrays = [np.ones(1)]
    if importlib.util.find_spec("torch") is not None:
        with xbp.using_backend("torch"):
            arrays.append(xbp.asarray([1.0]))  # a torch tensor goes to CuPy too, not to torch CUDA
    monkeypatch.setitem(__import__("sys").modules, "cupy", None)  # `import cupy` fails from here on
    backend.forget_namespace("cupy")
    for x in arrays:
        with pytest.raises(xbp.BackendError, match="backend 'cupy' cannot load: cupy is not installed"):
            xbp.to_gpu(x)


def test_device_name_names_the_selected_or_current_device(xp):
    name = backend.device_name()
    if xbp.get_backend() == "cupy":
        import cupy

        assert f"cuda:{cupy.cuda.runtime.getDevice()}" in name
    elif str(xbp.get_device()).startswith("cuda"):
        assert name.endswith(f"({xbp.get_device()})")
    else:
        assert f"({xbp.get_backend()} " in name


def test_ci_gpu_stops_at_once_where_cupy_cannot_run(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    try:
        xbp.get_namespace("cupy")
    except xbp.BackendError:
        pass
    else:
        pytest.skip("CuPy runs here: ci/gpu would run the whole GPU check, which is not a unit test")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "XBP_GPU_PACK": str(tmp_path / "no-pack")}
    done = subprocess.run([str(root / "ci" / "gpu"), str(tmp_path / "out")], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ci/gpu: backend 'cupy' " in done.stdout
    assert "cupy cannot run here (the line above says why)" in done.stdout
    assert (tmp_path / "out" / "gpu.log").read_text().count("cupy cannot run here") == 1
