"""SimpleConvNet and DeepConvNet: the book's shapes and names, backprop against central differences on
every backend, training that changes the weights, saving, resuming, and the book's own weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xbp
from tests._e2e import SHARED
from tests.harness import relative_error
from xbp.gradcheck import gradient_check
from xbp.layers import Convolution, Dropout, Pooling
from xbp.nets import DeepConvNet, SimpleConvNet
from xbp.optimizers import SGD, Adam
from xbp.training import evaluate, fit

SMALL_CONV = {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1}
TINY_DEEP = {f"conv_param_{i}": {"filter_num": 2, "filter_size": 3, "pad": 2 if i == 4 else 1, "stride": 1}
             for i in range(1, 7)}
BOOK_WEIGHTS = {"simple": SHARED / "book" / "ch07" / "params.pkl",
                "deep": SHARED / "book" / "ch08" / "deep_convnet_params.pkl"}


def images(seed: int, n: int, size: int = 10, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, size=(n, 1, size, size)), rng.integers(0, classes, size=n)


def off_the_kinks(net, seed: int = 0) -> None:
    """Biases of 0.5..1.5: no unit sits exactly on ReLU's kink (a zero bias meets a zeroed input)."""
    rng = np.random.default_rng(seed)
    for key, value in net.params.items():
        if key.startswith("b"):
            net.params[key] = xbp.asarray(0.5 + rng.random(value.shape), dtype=value.dtype)


def test_simple_conv_net_has_the_books_shapes_names_and_layers():
    net = SimpleConvNet(seed=0)
    shapes = {key: tuple(value.shape) for key, value in net.params.items()}
    assert shapes == {"W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
                      "W3": (100, 10), "b3": (10,)}
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert net.params["W1"].dtype == np.float32
    W1 = 0.01 * np.random.default_rng(0).standard_normal((30, 1, 5, 5))  # drawn first, the book's order
    np.testing.assert_array_equal(net.params["W1"], W1.astype(np.float32))


def test_deep_conv_net_has_the_books_shapes_names_and_init():
    net = DeepConvNet(seed=0, dtype="float64")
    shapes = {key: tuple(value.shape) for key, value in net.params.items()}
    channels = [1, 16, 16, 32, 32, 64, 64]
    expected = {}
    for i in range(6):
        expected[f"W{i + 1}"] = (channels[i + 1], channels[i], 3, 3)
        expected[f"b{i + 1}"] = (channels[i + 1],)
    expected.update(W7=(1024, 50), b7=(50,), W8=(50, 10), b8=(10,))
    assert shapes == expected
    assert [name for name in net.layers if name.startswith(("Conv", "Pool", "Affine", "Dropout"))] == [
        "Conv1", "Conv2", "Pool1", "Conv3", "Conv4", "Pool2", "Conv5", "Conv6", "Pool3", "Affine1",
        "Dropout1", "Affine2", "Dropout2"]
    fan_in = [9, 144, 144, 288, 288, 576, 1024, 50]  # the book's pre_node_nums
    for i, n_in in enumerate(fan_in, start=1):
        assert np.std(net.params[f"W{i}"]) == pytest.approx(math.sqrt(2 / n_in), rel=0.35), i


def test_conv_nets_are_made_on_the_selected_backend_with_the_same_weights(xp):
    net = SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=4, output_size=3, seed=5)
    with xbp.using_backend("numpy"):
        reference = SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=4, output_size=3, seed=5)
    for key, value in net.params.items():
        assert xbp.array_namespace(value) is xp and value.dtype == xp.float32
        np.testing.assert_array_equal(xbp.to_cpu(value), reference.params[key])


def test_simple_conv_net_gradient_matches_central_differences(xp):
    net = SimpleConvNet((1, 6, 6), SMALL_CONV, hidden_size=5, output_size=4, weight_init_std=0.3,
                        seed=1, dtype="float64")
    off_the_kinks(net)
    x, t = images(2, n=2, size=6)
    diffs = gradient_check(net, xbp.asarray(x, dtype="float64"), xbp.asarray(t))
    assert set(diffs) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert max(diffs.values()) < 1e-8, diffs


def test_deep_conv_net_gradient_matches_central_differences(xp):
    net = DeepConvNet((1, 8, 8), **TINY_DEEP, hidden_size=4, output_size=3, seed=2, dtype="float64")
    off_the_kinks(net)
    x, t = images(3, n=2, size=8, classes=3)
    diffs = gradient_check(net, xbp.asarray(x, dtype="float64"), xbp.asarray(t))  # masks held fixed
    assert len(diffs) == 16 and max(diffs.values()) < 1e-8, diffs


def test_the_first_convolution_skips_its_input_gradient():
    net = SimpleConvNet((1, 6, 6), SMALL_CONV, hidden_size=5, output_size=4, seed=1)
    calls = []
    conv = net.layers["Conv1"]
    original = conv.backward
    conv.backward = lambda dout, **kw: calls.append(kw) or original(dout, **kw)
    x, t = images(4, n=3, size=6)
    net.gradient(x.astype(np.float32), t)
    assert calls == [{"need_dx": False}]


def test_fit_trains_a_simple_conv_net_on_every_backend(xp):
    x, t = images(5, n=64, size=8, classes=2)
    x[t == 1, :, :4, :] += 1.0  # class 1 is bright at the top: learnable by one filter
    net = SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=8, output_size=2, weight_init_std=0.1, seed=3)
    before = {key: xbp.to_cpu(value).copy() for key, value in net.params.items()}
    history = fit(net, Adam(lr=0.01), (xbp.asarray(x, dtype="float32"), xbp.asarray(t)), epochs=8,
                  batch_size=16, progress=False, log=None)
    assert all(not np.array_equal(xbp.to_cpu(net.params[key]), before[key]) for key in before)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["train_acc"][-1] >= 0.9


def test_accuracy_predicts_a_hundred_images_at_a_time_and_counts_them_all():
    net = SimpleConvNet((1, 6, 6), SMALL_CONV, hidden_size=5, output_size=4, seed=1)
    x, t = images(6, n=250, size=6)
    x = x.astype(np.float32)
    seen = []
    predict = net.predict
    net.predict = lambda batch, *a: seen.append(batch.shape[0]) or predict(batch, *a)
    whole = float(np.mean(np.argmax(predict(x), axis=1) == t))
    assert net.accuracy(x, t) == whole and seen == [100, 100, 50]
    assert evaluate(net, x, t) == whole
    with pytest.raises(ValueError, match=r"batch_size must be a positive number of samples or None, got 0"):
        net.accuracy(x, t, batch_size=0)
    with pytest.raises(ValueError, match=r"accuracy needs one label per sample and at least one sample; "
                                         r"got 0 samples"):
        net.accuracy(x[:0], t[:0])


def test_deep_conv_net_keeps_about_111_mb_of_unrolled_input_at_batch_100():
    """What im2col costs DeepConvNet: every Convolution keeps its `col` for backward, float32."""
    net = DeepConvNet(seed=0)
    x, t = images(7, n=100, size=28, classes=10)
    net.gradient(x.astype(np.float32), t)
    kept = sum(layer.col.nbytes for layer in net.layers.values() if isinstance(layer, Convolution))
    # rows: 100 images x output positions; columns: input channels x 3 x 3
    expected = 4 * 100 * (784 * 9 + 784 * 144 + 196 * 144 + 256 * 288 + 64 * 288 + 64 * 576)
    assert kept == expected and round(kept / 1e6, 1) == 110.9


def test_a_conv_net_saves_loads_and_moves_between_backends(tmp_path):
    net = SimpleConvNet((1, 6, 6), SMALL_CONV, hidden_size=5, output_size=4, seed=1)
    x, _ = images(8, n=5, size=6)
    x = x.astype(np.float32)
    xbp.save_params(tmp_path / "net.npz", net.state())
    other = SimpleConvNet((1, 6, 6), SMALL_CONV, hidden_size=5, output_size=4, seed=99)
    other.set_params(xbp.load_params(tmp_path / "net.npz"))
    np.testing.assert_array_equal(other.predict(x), net.predict(x))
    with xbp.using_backend("array_api_strict"):
        moved = SimpleConvNet((1, 6, 6), SMALL_CONV, hidden_size=5, output_size=4, seed=99)
        moved.set_params(xbp.load_params(tmp_path / "net.npz"))
        np.testing.assert_allclose(xbp.to_cpu(moved.predict(xbp.asarray(x))), net.predict(x), rtol=1e-6)


def test_a_conv_net_resumes_exactly(tmp_path):
    x, t = images(9, n=40, size=6, classes=4)
    x = x.astype(np.float32)

    def run(epochs, resume=False):
        net = DeepConvNet((1, 6, 6), **TINY_DEEP, hidden_size=4, output_size=4, seed=4)
        history = fit(net, SGD(lr=0.05), (x, t), epochs=epochs, batch_size=10, progress=False, log=None,
                      checkpoint=tmp_path / "run", resume=resume)
        return net, history

    straight, whole = run(3)
    for path in (tmp_path / "run").iterdir():
        path.unlink()
    run(2)
    resumed, rest = run(3, resume=True)
    for key in straight.params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])
    assert len(rest["iter_loss"]) == 12  # the history comes back with the checkpoint, and goes on
    assert rest["iter_loss"] == whole["iter_loss"]  # the dropout masks continued from the checkpoint too


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"conv_param": {"filter_num": 30, "filter_size": 5}},
     r"conv_param must be a dict with the keys \['filter_num', 'filter_size', 'pad', 'stride'\]"),
    ({"conv_param": {"filter_num": 0, "filter_size": 5, "pad": 0, "stride": 1}},
     r"conv_param: filter_num, filter_size and stride must be positive integers"),
    ({"input_dim": (28, 28)}, r"input_dim must be \(channels, height, width\)"),
    ({"hidden_size": 0}, r"hidden_size must be a positive integer \(a number of units\), got 0"),
    ({"input_dim": (1, 3, 3)}, r"a filter of 5 does not fit an input of 3"),
])
def test_simple_conv_net_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimpleConvNet(**kwargs)


def test_deep_conv_net_names_the_bad_conv_param():
    with pytest.raises(ValueError, match=r"conv_param_3: filter_num, filter_size and stride must be"):
        DeepConvNet(conv_param_3={"filter_num": 32, "filter_size": 3, "pad": -1, "stride": 1})


def _book_predictions(net_file: str, class_name: str, weights, x: np.ndarray) -> np.ndarray:
    """The book's own net, with its weights, on x (its code imported from ../shared/book)."""
    import importlib
    import sys

    folder = str(weights.parent)
    sys.path[:0] = [folder, str(weights.parent.parent)]
    try:
        module = importlib.import_module(net_file)
        net = getattr(module, class_name)()
        net.load_params(str(weights))
        return net.predict(x)
    finally:
        del sys.path[:2]
        for name in [n for n in sys.modules if n == net_file or n == "common" or n.startswith("common.")]:
            del sys.modules[name]


@pytest.mark.parametrize("which", ["simple", "deep"])
def test_the_books_trained_weights_give_the_books_predictions(which):
    weights = BOOK_WEIGHTS[which]
    if not weights.is_file():
        pytest.skip(f"the book's weights are not at {weights} (the project's shared/ folder)")
    from xbp.pickles import load_pickle

    x = np.random.default_rng(10).uniform(0, 1, size=(20, 1, 28, 28))
    net = (SimpleConvNet if which == "simple" else DeepConvNet)(dtype="float64")
    net.set_params(load_pickle(weights))
    ours = net.predict(x)
    theirs = _book_predictions("simple_convnet" if which == "simple" else "deep_convnet",
                               "SimpleConvNet" if which == "simple" else "DeepConvNet", weights, x)
    assert relative_error(ours, theirs) < 1e-12
    assert isinstance(net.layers["Pool1"], Pooling) and not any(
        isinstance(layer, Dropout) and layer.mask is not None for layer in net.layers.values())
