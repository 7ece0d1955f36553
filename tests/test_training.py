"""fit and evaluate: device-resident training, the same batches on every backend, checked labels."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import xbp
from tests._e2e import E2E_BACKEND, E2E_DEVICE, needs_fashion
from tests.test_nets import backprop_by_hand
from xbp.layers import SoftmaxWithLoss
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD, AdaGrad, Adam, Momentum
from xbp.training import evaluate, fit


def blobs(n: int = 600, seed: int = 0):
    """Three well separated clusters in 8 dimensions: a net learns them in one epoch."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, size=n)
    centers = np.random.default_rng(1234).normal(0, 3, size=(3, 8))  # the same for every draw
    x = (centers[t] + rng.normal(0, 0.5, size=(n, 8))).astype(np.float32)
    return x, t


def test_fit_learns_and_reports_every_epoch(xp):
    x, t = blobs()
    net = TwoLayerNet(8, 16, 3, weight_init_std=0.1, seed=1)
    lines = []
    history = fit(net, SGD(lr=0.1), (x, t), epochs=2, batch_size=50, seed=0, eval=blobs(seed=9),
                  progress=True, log=lines.append)
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert history["test_acc"][-1] > 0.95 and history["train_acc"][-1] > 0.95
    assert all(s > 0 for s in history["samples_per_s"])
    assert lines[0].startswith("epoch 1/2  loss ") and "test acc" in lines[0] and "samples/s" in lines[0]
    assert net.last_layer.check_labels  # restored after training


def test_the_same_seed_gives_the_same_training_on_every_backend(xp):
    x, t = blobs(n=200)
    net = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2, dtype="float64")
    history = fit(net, SGD(lr=0.1), (x.astype(np.float64), t), epochs=1, batch_size=20, seed=5,
                  progress=False)
    with xbp.using_backend("numpy"):
        reference = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2, dtype="float64")
        expected = fit(reference, SGD(lr=0.1), (x.astype(np.float64), t), epochs=1, batch_size=20,
                       seed=5, progress=False)
    assert history["loss"][0] == pytest.approx(expected["loss"][0], rel=1e-10)
    np.testing.assert_allclose(xbp.to_cpu(net.params["W1"]), reference.params["W1"], rtol=1e-9)
    by_hand = {key: np.array(xbp.to_cpu(value), dtype=np.float64) for key, value in TwoLayerNet(
        8, 6, 3, weight_init_std=0.1, seed=2, dtype="float64").params.items()}
    x64 = x.astype(np.float64)
    for index in np.random.default_rng(5).permutation(200).reshape(10, 20):  # fit's batches, seed 5
        for key, grad in backprop_by_hand(by_hand, x64[index], t[index]).items():
            by_hand[key] -= 0.1 * grad  # SGD, written out
    for key, value in by_hand.items():  # fit against backprop and SGD written out in numpy
        np.testing.assert_allclose(xbp.to_cpu(net.params[key]), value, rtol=1e-9, atol=1e-12)


def test_fit_keeps_everything_on_array_api_strict_device1():
    """array-api-strict's device1 refuses to mix with its default device: nothing crosses."""
    x, t = blobs(n=200)
    with xbp.using_backend("array_api_strict", device="device1"):
        net = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2)
    history = fit(net, SGD(lr=0.1), (x, t), epochs=2, batch_size=20, eval=blobs(n=100, seed=3),
                  progress=False)
    assert str(net.device) == "array_api_strict.Device('device1')"
    assert history["test_acc"][0] > 0.5


def test_fit_checks_labels_once_before_training(xp):
    x, t = blobs(n=100)
    net = TwoLayerNet(8, 6, 3, seed=2)
    with pytest.raises(ValueError, match=r"train label 3 is out of range: class labels must be in \[0, 3\)"):
        fit(net, SGD(), (x, np.where(t == 0, 3, t)), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"eval 1-D labels must be integer class indices, got dtype float64"):
        fit(net, SGD(), (x, t), epochs=1, eval=(x, t.astype(np.float64)), progress=False)
    with pytest.raises(ValueError, match="train has 100 samples but 99 labels"):
        fit(net, SGD(), (x, t[:99]), epochs=1, progress=False)
    with pytest.raises(ValueError, match="batch_size 500 is larger than the 100 training samples"):
        fit(net, SGD(), (x, t), epochs=1, batch_size=500, progress=False)


def test_evaluate_matches_accuracy(xp):
    x, t = blobs(n=130)
    net = TwoLayerNet(8, 6, 3, weight_init_std=1.0, seed=4)
    xd, td = xbp.asarray(x), xbp.asarray(t)
    assert evaluate(net, xd, td, batch_size=50) == pytest.approx(net.accuracy(xd, td))
    assert evaluate(net, xd, xbp.asarray(np.eye(3)[t]), batch_size=7) == pytest.approx(net.accuracy(xd, td))


def test_progress_bar_writes_one_line_when_not_a_terminal():
    from xbp.progress import ProgressBar

    out = io.StringIO()
    with ProgressBar(10, desc="epoch 1/1", unit=" steps", file=out) as bar:
        for _ in range(10):
            bar.update()
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("epoch 1/1: 100% 10/10 steps")


@pytest.mark.slow
@needs_fashion
def test_three_epochs_of_the_books_defaults_on_fashion_mnist():
    """On the end-to-end backend: XBP_E2E_BACKEND (default numpy; ci/gpu sets cupy), XBP_E2E_DEVICE."""
    from xbp.datasets import load_mnist

    (x, t), test = load_mnist(dataset="fashion-mnist")
    with xbp.using_backend(E2E_BACKEND, E2E_DEVICE):
        net = TwoLayerNet(784, 50, 10, seed=0)
    history = fit(net, SGD(lr=0.1), (x, t), epochs=3, batch_size=100, seed=0, eval=test, progress=False)
    assert history["test_acc"][-1] >= 0.82, history


def test_fit_keeps_every_steps_loss_and_reads_them_back_once_per_epoch(xp, monkeypatch):
    import xbp.training as training

    read_backs = []
    original = training._read_back

    def counting(namespace, scalars):
        read_backs.append(len(scalars))
        return original(namespace, scalars)

    monkeypatch.setattr(training, "_read_back", counting)
    x, t = blobs(n=200)
    net = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2)
    history = fit(net, SGD(lr=0.1), (x, t), epochs=3, batch_size=40, progress=False)
    assert read_backs == [5, 5, 5]  # one transfer per epoch, of its 5 steps
    iter_loss = np.asarray(history["iter_loss"])
    assert iter_loss.shape == (15,) and np.all(np.isfinite(iter_loss))
    np.testing.assert_allclose(iter_loss.reshape(3, 5).mean(axis=1), history["loss"], rtol=1e-12)
    assert iter_loss[-1] < iter_loss[0]


@pytest.mark.parametrize("make_optimizer", [SGD, Momentum, AdaGrad, Adam])
def test_training_changes_the_layers_weights_and_lowers_the_loss(xp, make_optimizer):
    """The layers compute with the updated weights, on mutable and immutable (JAX) arrays alike."""
    x, t = blobs(n=200)
    net = TwoLayerNet(8, 16, 3, weight_init_std=0.1, seed=1)
    before = {key: xbp.to_cpu(value).copy() for key, value in net.params.items()}
    history = fit(net, make_optimizer(lr=0.05), (x, t), epochs=2, batch_size=20, progress=False)
    assert history["loss"][1] < history["loss"][0]
    for key, (name, attr) in net.bindings.items():
        used = xbp.to_cpu(getattr(net.layers[name], attr))
        assert not np.array_equal(used, before[key]), f"{name}.{attr} never changed"
        np.testing.assert_array_equal(used, xbp.to_cpu(net.params[key]))


def test_the_books_own_update_loop_reaches_the_layers(xp):
    """network.params[key] -= lr * grads[key], as the book writes it, trains on every backend."""
    x, t = blobs(n=100)
    x, t = xbp.asarray(x), xbp.asarray(t)
    network = TwoLayerNet(8, 16, 3, weight_init_std=0.1, seed=1)
    first = float(network.loss(x, t))
    for _ in range(20):
        grads = network.gradient(x, t)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= 0.5 * grads[key]
    assert float(network.loss(x, t)) < 0.5 * first


def test_fit_on_jax_with_its_default_32_bit_arrays_warns_of_nothing():
    """JAX without 64-bit arrays truncates int64 to int32 with a warning: xbp asks for neither."""
    pytest.importorskip("jax", reason="jax is not installed (pip install -r backends/jax.txt)")
    code = ("import numpy as np, xbp; from xbp.nets import TwoLayerNet; from xbp.optimizers import SGD; "
            "from xbp.training import fit; xbp.set_backend('jax.numpy'); "
            "rng = np.random.default_rng(0); x = rng.normal(size=(40, 4)).astype(np.float32); "
            "t = (x[:, 0] > 0).astype(np.int64); net = TwoLayerNet(4, 5, 2, seed=0); "
            "h = fit(net, SGD(0.5), (x, t), epochs=2, batch_size=10, eval=(x, t), progress=False); "
            "print(net.accuracy(xbp.asarray(x), xbp.asarray(t)), h['loss'])")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                         env={**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr


def test_fit_trains_a_net_where_it_lives_whatever_backend_is_selected(xp):
    """The net's device decides where training runs, also when another backend is selected."""
    x, t = blobs(n=100)
    net = TwoLayerNet(8, 16, 3, weight_init_std=0.1, seed=1)
    with xbp.using_backend("numpy"):
        history = fit(net, SGD(lr=0.1), (x, t), epochs=2, batch_size=20, progress=False)
    assert history["loss"][1] < history["loss"][0]
    assert xbp.array_namespace(net.params["W1"]) is xp


@pytest.mark.parametrize("labels", [[0, 1, 3], [0, -1, 2], [0.0, 1.0, 2.0], np.eye(4)[:3]],
                         ids=["too-high", "negative", "float", "one-hot"])
def test_fit_and_softmax_with_loss_explain_bad_labels_alike(labels):
    x, t = blobs(n=3)
    t = np.asarray(labels)
    net = TwoLayerNet(8, 6, 3, seed=2)
    with pytest.raises(ValueError) as by_layer:
        SoftmaxWithLoss().forward(net.predict(xbp.asarray(x)), xbp.asarray(t))
    with pytest.raises(ValueError) as by_fit:
        fit(net, SGD(), (x, t), epochs=1, batch_size=3, progress=False)
    assert str(by_fit.value) == f"train {by_layer.value}"


def test_no_module_that_fit_imports_imports_xbp_training_back():
    """fit's hooks and evaluate live in modules of their own: no import circle, lazy imports included."""
    import ast
    from pathlib import Path

    root = Path(xbp.__file__).parent
    importers = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            if "xbp.training" in modules and path.name != "training.py":
                importers.append(str(path.relative_to(root)))
    assert importers == []


def test_fit_calls_no_hook_after_each_step_unless_one_asks(monkeypatch, tmp_path):
    from xbp.hooks import Hook
    from xbp.resume import Checkpointing

    def refuse(*args):
        raise AssertionError("step_ended was called for a hook that does not ask for every step")

    monkeypatch.setattr(Hook, "step_ended", refuse)
    x, t = blobs(n=200)
    fit(TwoLayerNet(8, 6, 3, seed=2), SGD(lr=0.1), (x, t), epochs=2, batch_size=40, progress=False)
    calls = []
    step_ended = Checkpointing.step_ended
    monkeypatch.setattr(Checkpointing, "step_ended",
                        lambda self, epoch, done, *rest: calls.append((epoch, done)) or step_ended(
                            self, epoch, done, *rest))
    fit(TwoLayerNet(8, 6, 3, seed=2), SGD(lr=0.1), (x, t), epochs=2, batch_size=40, progress=False,
        checkpoint=tmp_path)
    assert calls == [(epoch, done) for epoch in (1, 2) for done in range(1, 6)]


# ---------------------------------------------------------------- inputs that are checked, nothing lost

def test_fit_refuses_non_finite_data_before_the_first_step_and_leaves_the_net_alone(xp):
    x, t = blobs(n=100)
    x[37, 2] = np.nan
    net = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2)
    before = {key: xbp.to_cpu(value).copy() for key, value in net.params.items()}
    with pytest.raises(ValueError, match=r"^train data holds 1 rows with NaN or infinite values, the first "
                                         r"row 37 \(a nan\): drop or repair those rows before fit; nothing "
                                         r"was trained\.$"):
        fit(net, SGD(lr=0.1), (xbp.asarray(x), xbp.asarray(t)), epochs=1, batch_size=10, progress=False)
    clean, _ = blobs(n=100)
    clean[5, 0] = -np.inf
    with pytest.raises(ValueError, match=r"^eval data holds 1 rows .* the first row 5 \(a -inf\)"):
        fit(net, SGD(lr=0.1), (xbp.asarray(blobs(n=100)[0]), xbp.asarray(t)), epochs=1, batch_size=10,
            eval=(xbp.asarray(clean), xbp.asarray(t)), progress=False)
    for key, value in before.items():
        np.testing.assert_array_equal(xbp.to_cpu(net.params[key]), value)


@pytest.mark.parametrize(("train", "message"), [
    (([[0.0] * 8] * 10, [0] * 10), r"train's x must be an array, got list: convert it with np.asarray\(x\)"),
    ((np.zeros((10, 8)), [0] * 10), r"train's t must be an array, got list"),
    ((np.zeros((10, 8)),), r"train must be a pair \(x, t\) of arrays, got tuple"),
])
def test_fit_names_what_is_not_an_array(train, message):
    with pytest.raises(TypeError, match=message):
        fit(TwoLayerNet(8, 6, 3, seed=0), SGD(lr=0.1), train, epochs=1, batch_size=5, progress=False)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, r"batch_size must be a positive number of samples or None, got 0"),
    ({"x": np.zeros((0, 8), np.float32)}, r"evaluate needs one label per sample and at least one sample; "
                                           r"got 0 samples"),
])
def test_evaluate_refuses_what_it_cannot_count(kwargs, message):
    x, t = blobs(n=20)
    kwargs = dict(kwargs)  # a copy: the parameters are the same dicts in every run in this process
    x = kwargs.pop("x", x)
    with pytest.raises(ValueError, match=message):
        evaluate(TwoLayerNet(8, 6, 3, seed=0), x, t[: len(x)], **kwargs)


def test_evaluate_counts_the_same_in_batches_of_any_size():
    x, t = blobs(n=20)
    net = TwoLayerNet(8, 6, 3, seed=0)
    accuracy = evaluate(net, x, t)
    assert [evaluate(net, x, t, batch_size=size) for size in (1, 3, 20, 100)] == [accuracy] * 4


class _MomentumThatBlowsUp(Momentum):
    """Momentum whose learning rate becomes absurd after `good` updates: a run that diverges on cue."""

    def __init__(self, lr: float, good: int) -> None:
        super().__init__(lr=lr)
        self.good, self.updates = good, 0

    def update(self, params, grads):
        self.updates += 1
        if self.updates > self.good:
            self.lr = 1e8
        super().update(params, grads)


@pytest.mark.parametrize("good_epochs", [0, 1])
def test_a_diverged_run_leaves_the_net_and_optimizer_as_the_last_good_epoch_left_them(xp, good_epochs):
    x, t = blobs(n=200)
    x, t = xbp.asarray(x), xbp.asarray(t)
    net = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2)
    reference = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2)
    if good_epochs:
        fit(reference, Momentum(lr=0.01), (x, t), epochs=good_epochs, batch_size=20, progress=False)
    optimizer = _MomentumThatBlowsUp(lr=0.01, good=10 * good_epochs)  # 10 steps an epoch
    with pytest.raises(xbp.TrainingDivergedError, match=r"the net and the optimizer hold what they held at "
                       + (r"the end of epoch 1" if good_epochs else r"the start of fit")) as caught, \
            np.errstate(over="ignore", invalid="ignore"):  # numpy's overflow on the way to divergence
        fit(net, optimizer, (x, t), epochs=3, batch_size=20, progress=False)
    assert caught.value.epoch == good_epochs + 1
    for key, value in reference.params.items():
        np.testing.assert_array_equal(xbp.to_cpu(net.params[key]), xbp.to_cpu(value))
    if good_epochs:
        assert all(np.all(np.isfinite(xbp.to_cpu(v))) for v in optimizer.v.values())
    else:
        assert optimizer.v is None  # as before its first update


def test_an_epoch_whose_last_update_breaks_a_weight_diverges_there_and_puts_the_epoch_before_back(xp):
    """The epoch's losses are all finite, but its last update left W2 infinite: fit stops at the end
    of that epoch, naming W2, before recording it, instead of going on from broken weights."""
    x, t = blobs(n=200)
    x, t = xbp.asarray(x), xbp.asarray(t)
    net = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2)
    reference = TwoLayerNet(8, 6, 3, weight_init_std=0.1, seed=2)
    fit(reference, SGD(lr=0.01), (x, t), epochs=1, batch_size=20, progress=False)
    optimizer, updates = SGD(lr=0.01), []
    update = optimizer.update

    def update_then_break_w2_at_the_end_of_epoch_2(params, grads):
        update(params, grads)
        updates.append(1)
        if len(updates) == 20:  # 10 steps an epoch
            params["W2"] = params["W2"] + math.inf  # a new array: JAX's cannot be changed in place

    optimizer.update = update_then_break_w2_at_the_end_of_epoch_2
    with pytest.raises(xbp.TrainingDivergedError, match=r"training diverged in epoch 2: W2 is not finite "
                       r"after it with lr 0\.01\. .* hold what they held at the end of epoch 1") as caught:
        fit(net, optimizer, (x, t), epochs=3, batch_size=20, progress=False, log=None)
    assert caught.value.epoch == 2 and math.isfinite(caught.value.loss)
    assert len(caught.value.history["loss"]) == 1  # epoch 2 is not recorded
    for key, value in reference.params.items():
        np.testing.assert_array_equal(xbp.to_cpu(net.params[key]), xbp.to_cpu(value))
