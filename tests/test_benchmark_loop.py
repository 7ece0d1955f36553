"""The hand-written numpy loop of benchmarks/benchmark.py computes what xbp computes, on every backend.

The benchmark is honest only if its reference does the same arithmetic as `fit`: the same batches,
the same weights after an epoch, the same mean loss, to float32 rounding.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

import xbp
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD
from xbp.training import fit

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark.py"
_spec = importlib.util.spec_from_file_location("xbp_benchmark_example", _PATH)
assert _spec is not None and _spec.loader is not None
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def test_the_numpy_loop_trains_as_fit_does(xp):
    rng = np.random.default_rng(3)
    x = rng.random((360, 20), dtype=np.float32)
    t = rng.integers(0, 10, size=360)
    batch, seed = 40, 7
    net = TwoLayerNet(20, 16, 10, weight_init_std=0.3, seed=seed)
    start = {key: xbp.to_cpu(value).copy() for key, value in net.params.items()}

    history = fit(net, SGD(lr=benchmark.LR), (x, t), epochs=1, batch_size=batch, seed=seed,
                  progress=False)
    loop_loss = benchmark.numpy_epoch(x, t, start, benchmark.epoch_order(len(x), batch, seed))

    assert abs(loop_loss - history["loss"][0]) <= 1e-5 * abs(loop_loss)
    for key, value in start.items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(xbp.to_cpu(net.params[key]), value, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{key} after one epoch")
        if xbp.get_backend() == "numpy":  # the same operations on the same library: the same bits
            np.testing.assert_array_equal(xbp.to_cpu(net.params[key]), value, err_msg=key)
    initial = TwoLayerNet(20, 16, 10, weight_init_std=0.3, seed=seed).params["W2"]
    assert np.abs(start["W2"] - xbp.to_cpu(initial)).max() > 1e-3  # the weights did train


def test_the_overhead_benchmarks_layer_loop_trains_as_fit_does(monkeypatch):
    """benchmarks/benchmark_overhead.py times the layers called directly: the same training, bit for bit."""
    monkeypatch.syspath_prepend(str(_PATH.parent))  # it imports the loop from benchmarks/benchmark.py
    path = _PATH.parent / "benchmark_overhead.py"
    spec = importlib.util.spec_from_file_location("xbp_overhead_example", path)
    assert spec is not None and spec.loader is not None
    overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overhead)
    rng = np.random.default_rng(5)
    x = rng.random((360, 20), dtype=np.float32)
    t = rng.integers(0, 10, size=360)
    by_fit, by_layers = (TwoLayerNet(20, 16, 10, weight_init_std=0.3, seed=1) for _ in range(2))
    start = {key: value.copy() for key, value in by_fit.params.items()}
    fit(by_fit, SGD(lr=benchmark.LR), (x, t), epochs=1, batch_size=40, seed=2, progress=False)
    overhead.layers_epoch(by_layers, x, t, benchmark.epoch_order(len(x), 40, 2))
    for key, value in by_fit.params.items():
        np.testing.assert_array_equal(value, by_layers.params[key])
        assert not np.array_equal(value, start[key])  # trained, not left alone


def test_the_written_out_step_of_the_instruction_count_trains_as_fit_does_bit_for_bit(monkeypatch):
    """benchmarks/step_instructions.py's written_out claims xbp's operations, in xbp's order: the
    weights after an epoch must be fit's, bit for bit, or its count is not the step's arithmetic."""
    monkeypatch.syspath_prepend(str(_PATH.parent))
    spec = importlib.util.spec_from_file_location("xbp_instructions_example",
                                                  _PATH.parent / "step_instructions.py")
    assert spec is not None and spec.loader is not None
    instructions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(instructions)
    rng = np.random.default_rng(6)
    x = rng.random((360, 20), dtype=np.float32)
    t = rng.integers(0, 10, size=360).astype(np.uint8)
    with xbp.using_backend("numpy"):
        net = TwoLayerNet(20, 16, 10, weight_init_std=0.3, seed=4)
    start = {key: value.copy() for key, value in net.params.items()}
    params = {key: value.copy() for key, value in net.params.items()}
    fit(net, SGD(lr=benchmark.LR), (x, t), epochs=1, batch_size=40, seed=3, progress=False)
    instructions.written_out(x, t, benchmark.epoch_order(len(x), 40, 3), params, benchmark.LR)
    for key, value in net.params.items():
        np.testing.assert_array_equal(value, params[key], err_msg=key)
        assert not np.array_equal(value, start[key]), key  # trained, not left alone
