"""xbp.book: the book's module names, argument names, dtypes and numbers, built from xbp's own parts."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import xbp
import xbp.book
from tests._e2e import SHARED, needs_fashion, pythonpath
from xbp import layers, optimizers
from xbp.book.common.multi_layer_net import MultiLayerNet
from xbp.book.common.multi_layer_net_extend import MultiLayerNetExtend
from xbp.book.common.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from xbp.book.common.trainer import Trainer
from xbp.book.common.util import shuffle_dataset, smooth_curve
from xbp.book.two_layer_net import TwoLayerNet


@pytest.fixture
def hook():
    """The import hook, installed for one test and removed after it."""
    xbp.book.install()
    yield
    xbp.book.uninstall()


def host_batch(n: int = 4, features: int = 6, classes: int = 3, seed: int = 0):
    """What the book hands its nets: numpy float32 images and uint8 labels (learnable ones)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, features), dtype=np.float32)
    t = np.argmax(x[:, :classes], axis=1).astype(np.uint8)
    return x, t


def test_the_hook_answers_the_books_names_with_xbps_modules(hook):
    import common.layers
    import common.optimizer
    import dataset.mnist
    import layer_naive
    import two_layer_net

    assert common.layers.Affine is layers.Affine  # no second implementation of any layer
    assert layer_naive.MulLayer is layers.MulLayer
    assert issubclass(two_layer_net.TwoLayerNet, xbp.nets.TwoLayerNet)
    assert issubclass(common.optimizer.Adam, optimizers.Adam)
    assert dataset.mnist.load_mnist is xbp.book.dataset.mnist.load_mnist
    assert common.layers.__name__ == "xbp.book.common.layers"  # the module keeps its own name


def test_the_hook_explains_a_book_module_it_does_not_have(hook):
    with pytest.raises(ModuleNotFoundError, match=r"xbp.book has no module 'common.config': it covers "
                                                  r"the book's chapters 5 to 8"):
        __import__("common.config")


def test_uninstall_lets_the_books_names_go():
    xbp.book.install()
    xbp.book.uninstall()
    assert not xbp.book.installed()
    assert "common" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        __import__("two_layer_net")


def test_books_nets_are_float64_and_take_the_books_numpy_arrays(xp):
    x, t = host_batch()
    for net in (TwoLayerNet(6, 5, 3), MultiLayerNet(6, [5, 4], 3),
                MultiLayerNetExtend(6, [5], 3, use_batchnorm=True)):
        assert all(value.dtype == xp.float64 for value in net.params.values())
        loss = net.loss(x, t)
        assert isinstance(loss, float) and np.isfinite(loss)
        predicted = np.argmax(xbp.to_cpu(net.predict(x)), axis=1)
        assert net.accuracy(x, t) == float(np.mean(predicted == t))  # counted here, on the host
        grads = net.gradient(x, t)
        assert all(xbp.device(grads[key]) == xbp.device(net.params[key]) for key in net.params)


def test_books_gradient_check_is_of_the_books_order_on_every_backend(xp):
    """The book's ch. 5 check: mean |backprop - numerical| per parameter, h = 1e-4, on the net itself."""
    x, t = host_batch(n=3, features=5, classes=3, seed=1)
    net = TwoLayerNet(5, 4, 3, weight_init_std=0.5, seed=2)
    numerical = net.numerical_gradient(x, t)
    backprop = net.gradient(x, t)
    for key in ("W1", "b1", "W2", "b2"):
        diff = float(xp.mean(xp.abs(backprop[key] - numerical[key])))
        assert diff <= 1e-6, (key, diff)


def test_np_random_seed_repeats_the_books_nets():
    np.random.seed(3)
    first = TwoLayerNet(4, 3, 2).params["W1"]
    np.random.seed(3)
    np.testing.assert_array_equal(xbp.to_cpu(TwoLayerNet(4, 3, 2).params["W1"]), xbp.to_cpu(first))


def test_multi_layer_net_extend_takes_the_books_arguments_in_the_books_order():
    net = MultiLayerNetExtend(6, [5, 4], 3, "sigmoid", 0.1, 0.01, True, 0.2, True, seed=0)
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    dropouts = [layer for layer in net.layers.values() if isinstance(layer, layers.Dropout)]
    assert [layer.dropout_ratio for layer in dropouts] == [0.2, 0.2]
    assert net.weight_decay_lambda == 0.01 and net.activation == "sigmoid"


def test_nesterov_and_rmsprop_follow_the_books_formulas():
    nesterov = optimizers.Nesterov(lr=0.1, momentum=0.9)
    p = {"w": np.array([1.0])}
    nesterov.update(p, {"w": np.array([1.0])})  # v = 0: W -= 1.9 * 0.1;  v = -0.1
    np.testing.assert_allclose(p["w"], [1.0 - 0.19])
    nesterov.update(p, {"w": np.array([1.0])})  # W += 0.81 * -0.1;  W -= 0.19
    np.testing.assert_allclose(p["w"], [1.0 - 0.19 - 0.081 - 0.19])
    rmsprop = optimizers.RMSprop(lr=0.1, decay_rate=0.99)
    p = {"w": np.array([1.0])}
    rmsprop.update(p, {"w": np.array([2.0])})  # h = 0.01 * 4
    np.testing.assert_allclose(p["w"], [1.0 - 0.1 * 2.0 / (np.sqrt(0.04) + 1e-7)])


@pytest.mark.parametrize("make_optimizer", [SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam])
def test_every_book_optimizer_lowers_the_loss_in_place_on_every_backend(xp, make_optimizer):
    x, t = host_batch(n=20, seed=4)
    net = TwoLayerNet(6, 8, 3, weight_init_std=0.3, seed=5)
    params = net.params
    first = net.loss(x, t)
    optimizer = make_optimizer(lr=0.1)
    for _ in range(100):
        optimizer.update(net.params, net.gradient(x, t))
    last = net.loss(x, t)  # a forward pass points the layers at net.params (new arrays on JAX)
    assert net.params is params and net.layers["Affine1"].W is params["W1"]
    assert last < 0.9 * first


def test_book_optimizers_take_plain_numbers_as_the_naive_comparison_does():
    params = {"x": -7.0, "y": 2.0}
    history = []
    optimizer = Momentum(lr=0.1)
    for _ in range(3):
        history.append(params["x"])
        optimizer.update(params, {"x": params["x"] / 10.0, "y": 2.0 * params["y"]})
    assert all(isinstance(value, float) for value in params.values())
    # v1 = -0.1 * -0.7 = 0.07; x1 = -6.93; v2 = 0.9 * 0.07 - 0.1 * -0.693 = 0.1323; x2 = -6.7977
    np.testing.assert_allclose(history, [-7.0, -6.93, -6.7977])


def test_trainer_runs_the_books_loop_with_the_books_lists_and_lines(xp, capsys):
    rng = np.random.default_rng(6)
    x = rng.random((40, 6), dtype=np.float32)
    t = (x[:, 0] > 0.5).astype(np.uint8)  # learnable
    np.random.seed(7)
    net = MultiLayerNet(6, [8], 2)
    trainer = Trainer(net, x, t, x[:10], t[:10], epochs=3, mini_batch_size=10, optimizer="Adam",
                      optimizer_param={"lr": 0.05}, evaluate_sample_num_per_epoch=20)
    trainer.train()
    out = capsys.readouterr().out.splitlines()
    assert trainer.max_iter == 12 and len(trainer.train_loss_list) == 12
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 3  # steps 0, 4, 8
    assert out[0].startswith("train loss:") and out[1].startswith("=== epoch:1, train acc:")
    assert out[-2:] == ["=============== Final Test Accuracy ===============",
                        f"test acc:{net.accuracy(x[:10], t[:10])}"]
    assert isinstance(trainer.optimizer, Adam)


def test_the_books_conversions_and_batches_are_made_inside_the_nets_device_scope(monkeypatch):
    """On CuPy a kernel runs on the current GPU: the book net's input conversions and the Trainer's
    batch gathering must run inside `device_scope` of the net's arrays (a no-op off CuPy, so here
    array-api-strict's adapter is given a scope that records, and the net lives on its device1)."""
    import contextlib

    from xbp import backend
    from xbp.book import booknet
    from xbp.book.common import trainer as trainer_module

    entered = []

    @contextlib.contextmanager
    def recording_scope(where=None):
        entered.append(where)
        yield

    def inside(function):
        def checked(*args, **kwargs):
            assert entered, f"{function.__name__} ran outside device_scope"
            return function(*args, **kwargs)
        return checked

    monkeypatch.setattr(backend.get_adapter("array_api_strict"), "scope", recording_scope)
    monkeypatch.setattr(booknet.BookNet, "_inputs", inside(booknet.BookNet._inputs))
    monkeypatch.setattr(trainer_module, "take_rows", inside(trainer_module.take_rows))
    x, t = host_batch(20)
    with xbp.using_backend("array_api_strict", "device1"):
        np.random.seed(3)
        net = TwoLayerNet(6, 4, 3)
        Trainer(net, x, t, x, t, epochs=1, mini_batch_size=5, verbose=False).train()
    assert entered and all(str(xbp.device(where)) == str(net.device) for where in entered)


def test_trainer_names_the_optimizers_it_knows():
    x, t = host_batch()
    with pytest.raises(ValueError, match=r"unknown optimizer 'lbfgs': choose one of sgd, momentum, "
                                         r"nesterov, adagrad, rmsprop, adam"):
        Trainer(TwoLayerNet(6, 4, 3), x, t, x, t, optimizer="lbfgs")


def test_smooth_curve_keeps_the_length_and_a_constant():
    np.testing.assert_allclose(smooth_curve([2.0] * 30), [2.0] * 30)
    ramp = smooth_curve(list(range(40)))
    assert ramp.shape == (40,)
    np.testing.assert_allclose(ramp[10:30], np.arange(10, 30))  # a symmetric window keeps a line
    with pytest.raises(ValueError, match="at least 11 values"):
        smooth_curve([1.0, 2.0])


def test_shuffle_dataset_keeps_each_label_with_its_sample(xp):
    x = xbp.asarray(np.arange(20.0).reshape(10, 2))
    t = xbp.asarray(np.arange(10))
    xs, ts = shuffle_dataset(x, t)
    host_x, host_t = xbp.to_cpu(xs), xbp.to_cpu(ts)
    np.testing.assert_array_equal(host_x[:, 0], 2.0 * host_t)
    assert sorted(host_t.tolist()) == list(range(10))


@needs_fashion
def test_books_load_mnist_returns_the_books_dtypes(monkeypatch):
    from xbp.book.dataset.mnist import load_mnist

    monkeypatch.setenv("XBP_BOOK_DATASET", "fashion-mnist")
    (x, t), (x_test, _) = load_mnist(normalize=False, flatten=False)
    assert x.dtype == np.uint8 and x.shape == (60000, 1, 28, 28) and t.dtype == np.uint8
    assert x_test.shape == (10000, 1, 28, 28)
    (x, t), _ = load_mnist(one_hot_label=True)
    assert x.dtype == np.float32 and x.shape == (60000, 784) and float(x.max()) <= 1.0
    assert t.dtype == np.float64 and t.shape == (60000, 10) and np.all(t.sum(axis=1) == 1)


def test_books_load_mnist_refuses_an_unknown_data_set(monkeypatch):
    from xbp.book.dataset.mnist import load_mnist

    monkeypatch.setenv("XBP_BOOK_DATASET", "cifar")
    with pytest.raises(xbp.DatasetError, match=r"unknown data set 'cifar' \(from XBP_BOOK_DATASET"):
        load_mnist()


def test_the_runner_refuses_a_missing_script(tmp_path):
    done = subprocess.run([sys.executable, "-m", "xbp.book", str(tmp_path / "nope.py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such script" in done.stderr


# ---------------------------------------------------------------- a chapter's own files

CHAPTER_FILE_SCRIPT = """import two_layer_net, simple_convnet, deep_convnet, layer_naive
for module in (two_layer_net, simple_convnet, deep_convnet, layer_naive):
    print(module.__name__)
"""


def _run_beside(folder, files: dict[str, str]) -> list[str]:
    """`python -m xbp.book script.py` in `folder`, holding `files` beside the script."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "script.py").write_text(CHAPTER_FILE_SCRIPT, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "xbp.book", "script.py"], cwd=folder, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": pythonpath()})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_hook_answers_a_chapter_file_only_where_none_is_beside_the_script(tmp_path):
    assert _run_beside(tmp_path / "alone", {}) == ["xbp.book.two_layer_net", "xbp.book.simple_convnet",
                                                   "xbp.book.deep_convnet", "xbp.book.layer_naive"]


def test_the_hook_never_answers_a_readers_own_chapter_file(tmp_path):
    """ch. 4's two_layer_net.py (sigmoid, numerical gradients) is not ch. 5's: it runs as written."""
    ch04 = ("from common.functions import *\n"
            "class TwoLayerNet:\n    activation = sigmoid  # ch. 4's own net\n")
    names = _run_beside(tmp_path / "ch04", {"two_layer_net.py": ch04,
                                           "simple_convnet.py": "# a reader's edited copy\n"})
    assert names == ["two_layer_net", "simple_convnet", "xbp.book.deep_convnet", "xbp.book.layer_naive"]


@pytest.mark.skipif(not (SHARED / "book" / "ch07" / "simple_convnet.py").is_file(),
                    reason=f"the book's code is not at {SHARED / 'book'}")
def test_the_hook_answers_the_books_published_chapter_files_with_crlf_too(tmp_path):
    files = {name: (SHARED / "book" / chapter / name).read_text(encoding="utf-8").replace("\n", "\r\n")
             for chapter, name in (("ch05", "two_layer_net.py"), ("ch07", "simple_convnet.py"),
                                   ("ch08", "deep_convnet.py"), ("ch05", "layer_naive.py"))}
    assert _run_beside(tmp_path / "book", files) == ["xbp.book.two_layer_net", "xbp.book.simple_convnet",
                                                     "xbp.book.deep_convnet", "xbp.book.layer_naive"]


# ---------------------------------------------------------------- the book's other public names

def test_every_public_name_of_the_books_common_and_dataset_modules_exists():
    book = SHARED / "book"
    if not (book / "common").is_dir():
        pytest.skip(f"the book's code is not at {book}")
    import ast
    import importlib

    for path in sorted([*(book / "common").glob("*.py"), book / "dataset" / "mnist.py"]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        public = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                  and not node.name.startswith("_")]
        module = importlib.import_module(f"xbp.book.{path.parent.name}.{path.stem}")
        missing = [name for name in public if not hasattr(module, name)]
        assert not missing, f"xbp.book.{path.parent.name}.{path.stem} lacks {missing}"


def test_the_books_functions_have_the_books_values(xp):
    from xbp.book.common import functions as book

    x_host = np.array([[-1.0, 0.0, 2.0], [3.0, -0.5, 0.0]])
    x = xbp.asarray(x_host)
    np.testing.assert_array_equal(xbp.to_cpu(book.step_function(x)), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(xbp.to_cpu(book.relu(x)), np.maximum(0, x_host))
    np.testing.assert_array_equal(xbp.to_cpu(book.relu_grad(x)), [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])  # x >= 0
    s = 1 / (1 + np.exp(-x_host))
    np.testing.assert_allclose(xbp.to_cpu(book.sigmoid_grad(x)), (1 - s) * s, rtol=1e-14)
    assert book.identity_function(x) is x
    t_host = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    squared = float(book.sum_squared_error(x, xbp.asarray(t_host)))
    assert squared == pytest.approx(0.5 * np.sum((x_host - t_host) ** 2))
    e = np.exp(x_host - x_host.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    expected = -np.sum(np.log(y[[0, 1], [2, 0]] + 1e-7)) / 2
    assert float(book.softmax_loss(x, xbp.asarray(np.array([2, 0])))) == pytest.approx(expected, rel=1e-12)
    assert book.step_function(3.0) == 1 and book.relu(-2) == 0  # numbers, as numpy takes them


def test_numerical_gradient_2d_goes_row_by_row(xp):
    from xbp.book.common.gradient import numerical_gradient_2d

    X = xbp.asarray(np.array([[1.0, 2.0], [3.0, -1.0]]))
    grad = numerical_gradient_2d(lambda row: xp.sum(row * row), X)  # f sees one row at a time
    np.testing.assert_allclose(xbp.to_cpu(grad), [[2.0, 4.0], [6.0, -2.0]], rtol=1e-8)
    np.testing.assert_array_equal(xbp.to_cpu(X), [[1.0, 2.0], [3.0, -1.0]])


def test_the_books_conv_output_size_is_a_float_and_im2col_is_xbps():
    from xbp.book.common import util

    assert util.conv_output_size(28, 5) == 24.0 and util.conv_output_size(7, 2, 2) == 3.5
    assert util.im2col is xbp.layers.im2col and util.col2im is xbp.layers.col2im


def test_book_dropout_draws_the_books_masks_from_numpys_global_generator(xp):
    from xbp.book.common.layers import Dropout

    x = xbp.asarray(np.ones((3, 4)))
    np.random.seed(5)
    out = Dropout(0.3).forward(x)
    np.random.seed(5)
    np.testing.assert_array_equal(xbp.to_cpu(out), np.ones((3, 4)) * (np.random.rand(3, 4) > 0.3))


def test_book_softmax_with_loss_reports_the_books_loss_and_takes_a_label_column(xp):
    from xbp.book.common.layers import SoftmaxWithLoss

    x_host = np.array([[2.0, -1.0, 0.5]])
    layer = SoftmaxWithLoss()
    loss = layer.forward(xbp.asarray(x_host), xbp.asarray(np.array([[1]])))  # ch. 7's T = [[1]]
    y = np.exp(x_host) / np.exp(x_host).sum()
    assert float(loss) == pytest.approx(-np.log(y[0, 1] + 1e-7), rel=1e-13)
    np.testing.assert_allclose(xbp.to_cpu(layer.backward()), y - [[0.0, 1.0, 0.0]], rtol=1e-13)


def test_the_books_nets_draw_the_books_weights_in_the_books_order():
    from xbp.book.deep_convnet import DeepConvNet
    from xbp.book.simple_convnet import SimpleConvNet

    np.random.seed(0)
    net = SimpleConvNet()
    np.random.seed(0)
    W1, W2, W3 = (0.01 * np.random.randn(*shape) for shape in ((30, 1, 5, 5), (4320, 100), (100, 10)))
    for key, expected in (("W1", W1), ("W2", W2), ("W3", W3)):
        np.testing.assert_array_equal(net.params[key], expected)
    np.random.seed(1)
    deep = DeepConvNet()
    np.random.seed(1)
    first = np.sqrt(2.0 / 9) * np.random.randn(16, 1, 3, 3)
    np.testing.assert_array_equal(deep.params["W1"], first)
    np.random.seed(2)
    two = TwoLayerNet(4, 3, 2)
    np.random.seed(2)
    np.testing.assert_array_equal(two.params["W1"], 0.01 * np.random.randn(4, 3))
    np.testing.assert_array_equal(two.params["W2"], 0.01 * np.random.randn(3, 2))


def test_the_books_pickles_load_and_anything_else_is_refused(tmp_path):
    import pickle

    from xbp.book.simple_convnet import SimpleConvNet

    net = SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}, 4, 3)
    net.save_params(tmp_path / "params.pkl")
    other = SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}, 4, 3)
    other.load_params(tmp_path / "params.pkl")
    for key in net.params:
        np.testing.assert_array_equal(other.params[key], net.params[key])

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"W1": Payload()}))
    with pytest.raises(xbp.CheckpointError, match=r"evil.pkl: the pickle asks for posix.system, and only "
                                                  r"numpy arrays and numbers are loaded"):
        other.load_params(tmp_path / "evil.pkl")
    (tmp_path / "cut.pkl").write_bytes((tmp_path / "params.pkl").read_bytes()[:100])
    with pytest.raises(xbp.CheckpointError, match=r"cut.pkl: not a readable pickle"):
        other.load_params(tmp_path / "cut.pkl")
    (tmp_path / "strings.pkl").write_bytes(pickle.dumps({"W1": "not an array"}))
    with pytest.raises(xbp.CheckpointError, match=r"the file\['W1'\] is a str; weight files hold"):
        other.load_params(tmp_path / "strings.pkl")
