"""TwoLayerNet, gradient checking and optimizers, on every backend."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xbp
from tests.harness import relative_error
from xbp.gradcheck import gradient_check, numerical_gradient
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD, AdaGrad, Adam, Momentum


def small_batch(seed: int = 0, n: int = 4, features: int = 6, classes: int = 3):
    x = np.random.default_rng(seed).uniform(0, 1, size=(n, features))
    t = np.random.default_rng(seed + 1).integers(0, classes, size=n)
    return x, t


def test_numerical_gradient_of_a_known_function(xp):
    x = xbp.asarray([3.0, 4.0], dtype="float64")  # f = x0^2 + x1^2, df/dx = 2x (the book's example)
    grad = numerical_gradient(lambda v: xp.sum(v * v), x)
    assert relative_error(grad, [6.0, 8.0]) < 1e-9
    assert xbp.to_cpu(x).tolist() == [3.0, 4.0]  # restored


def test_numerical_gradient_is_on_the_device_of_x():
    with xbp.using_backend("array_api_strict", device="device1"):
        x = xbp.asarray([3.0, 4.0], dtype="float64")
    grad = numerical_gradient(lambda v: xbp.array_namespace(v).sum(v * v), x)
    assert xbp.device(grad) == xbp.device(x) and grad.dtype == x.dtype


def test_numerical_gradient_changes_a_writeable_array_in_place_as_the_book_does(xp):
    x = xbp.asarray([3.0, 4.0], dtype="float64")
    if not array_api_compat.is_writeable_array(x):
        pytest.skip("JAX's arrays cannot be changed in place: there f must use the copy it is given")
    grad = numerical_gradient(lambda _: xp.sum(x * x * x), x)  # f reads x itself, as the book's nets do
    assert relative_error(grad, [27.0, 48.0]) < 1e-7
    assert xbp.to_cpu(x).tolist() == [3.0, 4.0]


def test_numerical_gradient_of_an_array_it_cannot_change_passes_changed_copies():
    """The path for JAX's immutable arrays, taken here by a read-only numpy array: `f` gets a copy in
    x's dtype with one element moved by +-h, and x itself stays as it was."""
    x = np.array([[3.0, -1.0], [0.5, 2.0]], dtype=np.float32)
    x.flags.writeable = False
    seen = []

    def f(v):
        seen.append(v)
        return np.sum(v.astype(np.float64) ** 3)

    grad = numerical_gradient(f, x, h=1e-3)
    assert grad.dtype == np.float32 and all(v.dtype == np.float32 and v is not x for v in seen)
    np.testing.assert_allclose(grad, 3 * x.astype(np.float64) ** 2, rtol=1e-4)  # float32 steps
    assert len(seen) == 8 and all(np.count_nonzero(v != x) == 1 for v in seen)
    np.testing.assert_array_equal(x, [[3.0, -1.0], [0.5, 2.0]])


def test_same_seed_gives_the_same_weights_on_every_backend(xp):
    net = TwoLayerNet(5, 4, 3, seed=7)
    reference = np.random.default_rng(7)
    W1 = 0.01 * reference.standard_normal((5, 4))
    np.testing.assert_array_equal(xbp.to_cpu(net.params["W1"]), W1.astype(np.float32))
    assert xbp.to_cpu(net.params["b1"]).tolist() == [0.0] * 4
    assert net.params["W2"].dtype == xp.float32
    assert xbp.array_namespace(net.params["W2"]) is xp


def test_gradient_is_the_same_on_every_backend(xp):
    x, t = small_batch()
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=3, dtype="float64")
    grads = net.gradient(xbp.asarray(x), xbp.asarray(t))
    with xbp.using_backend("numpy"):
        host = TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=3, dtype="float64").params
    for key, value in backprop_by_hand(host, x, t).items():  # the same net, written out in numpy
        assert relative_error(grads[key], value) < 1e-12, key


def backprop_by_hand(params: dict, x: np.ndarray, t: np.ndarray) -> dict:
    """Affine -> Relu -> Affine -> softmax cross-entropy, its gradients derived by hand (float64)."""
    W1, b1, W2, b2 = (np.asarray(params[k], dtype=np.float64) for k in ("W1", "b1", "W2", "b2"))
    a = x @ W1 + b1
    h = np.maximum(a, 0)
    s = h @ W2 + b2
    y = np.exp(s - s.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    ds = (y - np.eye(W2.shape[1])[t]) / len(x)
    dh = ds @ W2.T * (a > 0)
    return {"W1": x.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ ds, "b2": ds.sum(axis=0)}


@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
def test_gradient_matches_numerical_gradient(xp, one_hot):
    x, t = small_batch(seed=4)
    t_in = np.eye(3)[t] if one_hot else t
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=11, dtype="float64")
    grads = net.gradient(xbp.asarray(x), xbp.asarray(t_in))
    numerical = net.numerical_gradient(xbp.asarray(x), xbp.asarray(t_in))
    for key in ("W1", "b1", "W2", "b2"):
        assert relative_error(grads[key], numerical[key]) < 1e-6, key


def test_gradient_check_reports_the_books_mean_absolute_difference(xp):
    x, t = small_batch(seed=5)
    net = TwoLayerNet(6, 5, 3, seed=2)  # float32, checked on a float64 copy
    diffs = gradient_check(net, xbp.asarray(x, dtype="float32"), xbp.asarray(t))
    assert set(diffs) == {"W1", "b1", "W2", "b2"}
    assert all(0 <= d < 1e-9 for d in diffs.values()), diffs
    assert net.params["W1"].dtype == xp.float32  # the net itself is left as it was


def test_accuracy_with_labels_and_one_hot(xp):
    net = TwoLayerNet(2, 3, 2, seed=0, dtype="float64")
    x = xbp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], dtype="float64")
    predicted = np.argmax(xbp.to_cpu(net.predict(x)), axis=1)
    labels = predicted.copy()
    labels[0] = 1 - labels[0]
    assert net.accuracy(x, xbp.asarray(labels)) == 0.75
    assert net.accuracy(x, xbp.asarray(np.eye(2)[labels])) == 0.75


def test_to_device_round_trip_keeps_layers_pointing_at_params(xp):
    net = TwoLayerNet(4, 3, 2, seed=1)
    before = {k: xbp.to_cpu(v).copy() for k, v in net.params.items()}
    assert net.to_device("array_api_strict:device1") is net
    assert str(net.device) == "array_api_strict.Device('device1')"
    assert net.layers["Affine1"].W is net.params["W1"] and net.layers["Affine2"].b is net.params["b2"]
    x = xbp.to_device(np.ones((2, 4), dtype=np.float32), net.device)
    net.gradient(x, xbp.to_device(np.array([0, 1]), net.device))
    net.to_device(xbp.device(xbp.asarray([0.0])))
    assert xbp.array_namespace(net.params["W1"]) is xp
    for key, value in before.items():
        np.testing.assert_array_equal(xbp.to_cpu(net.params[key]), value)
    assert isinstance(net.to_cpu().params["W1"], np.ndarray)


def test_a_net_on_one_device_refuses_data_on_another():
    net = TwoLayerNet(4, 3, 2, seed=1).to_device("array_api_strict:device1")
    with pytest.raises(xbp.DeviceMismatchError, match=r"numpy array on cpu and array_api_strict array"):
        net.predict(np.ones((2, 4), dtype=np.float32))


@pytest.mark.parametrize("make_optimizer", [SGD, Momentum, AdaGrad, Adam])
def test_optimizers_lower_the_loss_and_keep_dtype_and_device(xp, make_optimizer):
    optimizer = make_optimizer(lr=0.1)
    x, t = small_batch(seed=8, n=20)
    x, t = xbp.asarray(x, dtype="float32"), xbp.asarray(t)
    net = TwoLayerNet(6, 8, 3, weight_init_std=0.3, seed=9)
    params = net.params
    first = float(net.loss(x, t))
    for _ in range(50):
        optimizer.update(net.params, net.gradient(x, t))
    assert float(net.loss(x, t)) < 0.9 * first
    assert net.params is params and net.layers["Affine1"].W is params["W1"]  # the layers see the update
    for value in net.params.values():
        assert value.dtype == xp.float32
        assert xbp.device(value) == xbp.device(x)


def test_optimizer_updates_follow_the_books_formulas():
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.25])}
    SGD(lr=0.1).update(p, g)
    np.testing.assert_allclose(p["w"], [0.95, -2.025])
    momentum = Momentum(lr=0.1, momentum=0.9)
    p = {"w": np.array([1.0])}
    momentum.update(p, {"w": np.array([1.0])})
    momentum.update(p, {"w": np.array([1.0])})
    np.testing.assert_allclose(p["w"], [1.0 - 0.1 - (0.09 + 0.1)])
    adagrad = AdaGrad(lr=0.1)
    p = {"w": np.array([1.0])}
    adagrad.update(p, {"w": np.array([2.0])})
    np.testing.assert_allclose(p["w"], [1.0 - 0.1 * 2.0 / (2.0 + 1e-7)])
    adam = Adam(lr=0.1)
    p = {"w": np.array([1.0])}
    adam.update(p, {"w": np.array([3.0])})
    # after one step m = 0.3, v = 0.009, lr_t = 0.1 * sqrt(0.001) / 0.1: the step is lr * sign(g)
    np.testing.assert_allclose(p["w"], [1.0 - 0.1 * np.sqrt(0.001) / 0.1 * 0.3 / (np.sqrt(0.009) + 1e-7)])
    np.testing.assert_allclose(p["w"], [0.9], atol=1e-6)



@pytest.mark.parametrize(("args", "message"), [
    ((0, 5, 3), r"input_size must be a positive integer \(a number of units\), got 0"),
    ((784, 0, 10), r"hidden_size must be a positive integer .* got 0"),
    ((784, -50, 10), r"hidden_size must be a positive integer .* got -50"),
    ((784, 50, 10.5), r"output_size must be a positive integer .* got 10.5"),
    ((784, True, 10), r"hidden_size must be a positive integer .* got True"),
    ((4, 3, 2, float("nan")), r"weight_init_std must be a finite number \(the book's 0.01\), got nan"),
])
def test_two_layer_net_refuses_sizes_that_make_no_net(args, message):
    with pytest.raises(ValueError, match=message):
        TwoLayerNet(*args)
