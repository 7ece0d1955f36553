"""Deeper nets on every backend: MultiLayerNet, BatchNormalization, Dropout, weight decay, and the
random numbers drawn on the device, each against numpy float64 references or central differences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import xbp
from tests.harness import RTOL_GRAD, check_backward, host, relative_error
from xbp.backend import DeviceRNG
from xbp.gradcheck import gradient_check
from xbp.layers import BatchNormalization, Dropout
from xbp.nets import MultiLayerNet, TwoLayerNet
from xbp.optimizers import Adam

EPS = 1e-6  # BatchNormalization's default, the book's 10e-7


def ref_batchnorm(x, gamma, beta, mean, var):
    return gamma * (x - mean) / np.sqrt(var + EPS) + beta


def fix_dropout_masks(net):
    for layer in net.layers.values():
        if isinstance(layer, Dropout):
            layer.fixed_mask = True


def flat(grads, keys):
    return np.concatenate([xbp.to_cpu(grads[key]).ravel() for key in keys])


# ---------------------------------------------------------------- MultiLayerNet: the gradient check

@pytest.mark.parametrize(("activation", "use_batchnorm", "use_dropout"),
                         list(itertools.product(["relu", "sigmoid"], [False, True], [False, True])))
def test_multilayer_net_gradient_matches_central_differences(xp, activation, use_batchnorm, use_dropout):
    # One fixed seed: central differences are wrong within ~h of a ReLU kink, and their O(h^2) error
    # grows with BatchNormalization's curvature on a batch of 4. For this seed every case is at most
    # 3e-8 on the CPU backends, well inside the bound.
    rng = np.random.default_rng(3)
    net = MultiLayerNet(6, [5, 4], 3, activation=activation, use_batchnorm=use_batchnorm,
                        use_dropout=use_dropout, weight_decay_lambda=0.1, seed=3, dtype="float64")
    for key in net.params:  # move off the special starting point (zero biases, gamma = 1)
        net.params[key] += xbp.asarray(rng.uniform(-0.5, 0.5, tuple(net.params[key].shape)))
    x, t = xbp.asarray(rng.standard_normal((4, 6))), xbp.asarray([0, 2, 1, 2])
    net.gradient(x, t)  # draws the dropout masks, which stay fixed from here on
    fix_dropout_masks(net)

    backprop = net.gradient(x, t)
    numerical = net.numerical_gradient(x, t)

    assert backprop.keys() == net.params.keys()
    # over all parameters at once: a bias followed by BatchNormalization has a true gradient of 0
    error = relative_error(flat(backprop, net.params), flat(numerical, net.params))
    assert error < RTOL_GRAD, f"max relative error {error:.1e}"


def test_gradient_check_keeps_the_dropout_masks_fixed(xp):
    net = MultiLayerNet(6, [5], 3, use_batchnorm=True, use_dropout=True, seed=5)
    x, t = xbp.asarray(host(1, 4, 6), dtype="float32"), xbp.asarray([0, 1, 2, 1])
    diffs = gradient_check(net, x, t)
    assert diffs.keys() == net.params.keys()
    assert max(diffs.values()) < 1e-8
    assert net.params["W1"].dtype == xp.float32  # the check ran on a float64 copy


def test_weight_decay_adds_to_loss_and_weight_gradients(xp):
    x, t = xbp.asarray(host(2, 4, 6)), xbp.asarray([1, 0, 2, 2])
    plain = MultiLayerNet(6, [5, 4], 3, seed=7, dtype="float64")
    decayed = MultiLayerNet(6, [5, 4], 3, seed=7, dtype="float64", weight_decay_lambda=0.3)
    sum_w2 = sum(float(np.sum(xbp.to_cpu(plain.params[f"W{i}"]) ** 2)) for i in (1, 2, 3))
    assert float(decayed.loss(x, t)) == pytest.approx(float(plain.loss(x, t)) + 0.5 * 0.3 * sum_w2,
                                                      rel=1e-13)
    g_plain, g_decayed = plain.gradient(x, t), decayed.gradient(x, t)
    for key in g_plain:
        expected = xbp.to_cpu(g_plain[key])
        if key.startswith("W"):
            expected = expected + 0.3 * xbp.to_cpu(plain.params[key])
        assert relative_error(g_decayed[key], expected) < 1e-13, key


# ---------------------------------------------------------------- MultiLayerNet: construction

def test_one_seed_gives_the_same_initial_weights_on_every_backend(xp):
    net = MultiLayerNet(6, [5, 4], 3, seed=11, use_batchnorm=True)
    rng = np.random.default_rng(11)
    for idx, (n_in, n_out) in enumerate([(6, 5), (5, 4), (4, 3)], start=1):
        expected = (math.sqrt(2.0 / n_in) * rng.standard_normal((n_in, n_out))).astype(np.float32)
        np.testing.assert_array_equal(xbp.to_cpu(net.params[f"W{idx}"]), expected)
        np.testing.assert_array_equal(xbp.to_cpu(net.params[f"b{idx}"]), np.zeros(n_out, np.float32))
    np.testing.assert_array_equal(xbp.to_cpu(net.params["gamma2"]), np.ones(4, np.float32))
    with xbp.using_backend("numpy"):
        on_numpy = MultiLayerNet(6, [5, 4], 3, seed=11, use_batchnorm=True)
    for key, value in on_numpy.params.items():
        np.testing.assert_array_equal(xbp.to_cpu(net.params[key]), value)


@pytest.mark.parametrize(("weight_init_std", "scale"),
                         [("relu", 2.0), ("He", 2.0), ("sigmoid", 1.0), ("xavier", 1.0), (0.01, None)])
def test_weight_init_std(weight_init_std, scale):
    net = MultiLayerNet(8, [6], 2, weight_init_std=weight_init_std, seed=2, dtype="float64")
    rng = np.random.default_rng(2)
    for key, n_in, shape in (("W1", 8, (8, 6)), ("W2", 6, (6, 2))):
        std = 0.01 if scale is None else math.sqrt(scale / n_in)
        np.testing.assert_allclose(xbp.to_cpu(net.params[key]), std * rng.standard_normal(shape), rtol=1e-15)


def test_layers_and_params_have_the_books_names():
    net = MultiLayerNet(6, [5, 4], 3, activation="sigmoid", use_batchnorm=True, use_dropout=True)
    assert list(net.layers) == ["Affine1", "BatchNorm1", "Sigmoid1", "Dropout1",
                                "Affine2", "BatchNorm2", "Sigmoid2", "Dropout2", "Affine3"]
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    assert net.layers["BatchNorm2"].gamma is net.params["gamma2"]
    plain = MultiLayerNet(6, [], 3)
    assert list(plain.layers) == ["Affine1"] and list(plain.params) == ["W1", "b1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "tanh"}, r"activation must be 'relu' or 'sigmoid', got 'tanh'"),
        ({"weight_init_std": "glorot"},
         r"weight_init_std must be a number or one of 'relu', 'he' \(sqrt\(2/n\)\), 'sigmoid', "
         r"'xavier' \(sqrt\(1/n\)\); got 'glorot'"),
        ({"weight_init_std": None}, r"weight_init_std must be a number .* got None"),
        ({"use_dropout": True, "dropout_ratio": 1.0}, r"dropout_ratio must be in \[0, 1\) .* got 1.0"),
        ({"hidden_size_list": [5, 0]}, r"layer sizes must be positive integers, .*hidden_size_list=\[5, 0\]"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    args = {"input_size": 6, "hidden_size_list": [5], "output_size": 3} | kwargs
    with pytest.raises(ValueError, match=message):
        MultiLayerNet(**args)


# ---------------------------------------------------------------- MultiLayerNet: modes, dtypes, devices

def test_predict_is_inference_and_gradient_is_training(xp):
    net = MultiLayerNet(6, [5], 3, use_batchnorm=True, use_dropout=True, seed=4)
    x, t = xbp.asarray(host(1, 8, 6), dtype="float32"), xbp.asarray([0, 1, 2, 1, 0, 2, 2, 1])
    first = xbp.to_cpu(net.predict(x))
    np.testing.assert_array_equal(xbp.to_cpu(net.predict(x)), first)  # no masks drawn
    net.loss(x, t)
    bn = net.layers["BatchNorm1"]
    assert not np.any(xbp.to_cpu(bn.running_mean))  # inference leaves the running statistics alone
    net.gradient(x, t)
    assert np.any(xbp.to_cpu(bn.running_mean))
    assert net.layers["Dropout1"].mask is not None
    predicted = np.argmax(xbp.to_cpu(net.predict(x)), axis=1)  # inference: no mask, the running statistics
    assert net.accuracy(x, t) == float(np.mean(predicted == xbp.to_cpu(t)))


def test_float32_stays_float32_through_gradient_and_update(xp):
    net = MultiLayerNet(6, [5, 4], 3, use_batchnorm=True, use_dropout=True, weight_decay_lambda=0.1, seed=1)
    x, t = xbp.asarray(host(1, 4, 6), dtype="float32"), xbp.asarray([0, 2, 1, 2])
    optimizer = Adam()
    for _ in range(2):
        grads = net.gradient(x, t)
        assert all(grads[key].dtype == xp.float32 for key in grads)
        optimizer.update(net.params, grads)
    assert all(value.dtype == xp.float32 for value in net.params.values())
    assert net.loss(x, t).dtype == xp.float32
    assert net.layers["BatchNorm1"].running_var.dtype == xp.float32
    clone = net.astype("float64")
    assert clone.layers["BatchNorm1"].running_var.dtype == xp.float64
    assert clone.predict(xbp.asarray(host(1, 4, 6))).dtype == xp.float64


def test_to_device_moves_the_running_statistics():
    with xbp.using_backend("array_api_strict"):
        net = MultiLayerNet(6, [5], 3, use_batchnorm=True, use_dropout=True, seed=1)
        x, t = xbp.asarray(host(1, 4, 6), dtype="float32"), xbp.asarray([0, 2, 1, 2])
    net.gradient(x, t)
    with xbp.using_backend("array_api_strict", device="device1"):
        dev = xbp.get_device()
        x1, t1 = xbp.asarray(host(1, 4, 6), dtype="float32"), xbp.asarray([0, 2, 1, 2])
    net.to_device(dev)
    bn = net.layers["BatchNorm1"]
    assert xbp.device(bn.running_mean) == dev and xbp.device(bn.running_var) == dev
    assert xbp.device(net.predict(x1)) == dev
    grads = net.gradient(x1, t1)
    assert all(xbp.device(g) == dev for g in grads.values())
    assert xbp.device(net.layers["Dropout1"].mask) == dev


def test_two_layer_net_is_unchanged(xp):
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=0, dtype="float64")
    x, t = xbp.asarray(host(3, 4, 6)), xbp.asarray([0, 2, 1, 2])
    assert relative_error(net.predict(x), net.predict(x, train_flg=True)) == 0
    backprop, numerical = net.gradient(x, t), net.numerical_gradient(x, t)
    assert relative_error(flat(backprop, net.params), flat(numerical, net.params)) < RTOL_GRAD


# ---------------------------------------------------------------- BatchNormalization

def test_batchnorm_training_forward_has_zero_mean_and_unit_variance(xp):
    x_host = host(1, 16, 5) * np.array([1.0, 3.0, 0.5, 10.0, 2.0]) + np.array([0.0, 5.0, -2.0, 1.0, 100.0])
    layer = BatchNormalization(xbp.asarray(np.ones(5)), xbp.asarray(np.zeros(5)))
    out = xbp.to_cpu(layer.forward(xbp.asarray(x_host), train_flg=True))
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), 1.0, atol=1e-5)  # var / (var + eps)
    gamma, beta = host(2, 5), host(3, 5)
    layer = BatchNormalization(xbp.asarray(gamma), xbp.asarray(beta))
    expected = ref_batchnorm(x_host, gamma, beta, x_host.mean(axis=0), x_host.var(axis=0))
    assert relative_error(layer.forward(xbp.asarray(x_host)), expected) < 1e-12


def test_batchnorm_inference_uses_the_running_statistics(xp):
    gamma, beta = host(2, 3), host(3, 3)
    layer = BatchNormalization(xbp.asarray(gamma), xbp.asarray(beta), momentum=0.8)
    batches = [host(4, 6, 3, low=-1, high=3), host(5, 6, 3, low=0, high=5)]
    mean, var = np.zeros(3), np.zeros(3)  # the book starts both at zero
    for batch in batches:
        layer.forward(xbp.asarray(batch), train_flg=True)
        mean = 0.8 * mean + 0.2 * batch.mean(axis=0)
        var = 0.8 * var + 0.2 * batch.var(axis=0)
    assert relative_error(layer.running_mean, mean) < 1e-14
    assert relative_error(layer.running_var, var) < 1e-14
    x_host = host(6, 4, 3)
    out = layer.forward(xbp.asarray(x_host), train_flg=False)
    assert relative_error(out, ref_batchnorm(x_host, gamma, beta, mean, var)) < 1e-13
    assert relative_error(layer.running_mean, mean) < 1e-14  # inference does not update them


def test_batchnorm_starts_from_running_statistics_it_is_given(xp):
    gamma, beta, mean, var = host(1, 3), host(2, 3), host(3, 3), host(4, 3, low=0.5, high=2)
    layer = BatchNormalization(*(xbp.asarray(a) for a in (gamma, beta)), running_mean=xbp.asarray(mean),
                               running_var=xbp.asarray(var))
    x_host = host(5, 4, 3)
    out = layer.forward(xbp.asarray(x_host), train_flg=False)
    assert relative_error(out, ref_batchnorm(x_host, gamma, beta, mean, var)) < 1e-13


@pytest.mark.parametrize("train_flg", [True, False], ids=["training", "inference"])
def test_batchnorm_backward(xp, train_flg):
    gamma, beta = xbp.asarray(host(1, 4, low=0.5, high=2)), xbp.asarray(host(2, 4))
    layer = BatchNormalization(gamma, beta)
    layer.forward(xbp.asarray(host(3, 7, 4)), train_flg=True)  # running statistics for inference

    def forward(x_, gamma_, beta_):
        layer.gamma, layer.beta = gamma_, beta_
        return layer.forward(x_, train_flg=train_flg)

    def backward(dout):
        return layer.backward(dout), layer.dgamma, layer.dbeta

    x, dout = xbp.asarray(host(4, 5, 4)), xbp.asarray(host(5, 5, 4))
    check_backward(forward, backward, [x, gamma, beta], dout)


def test_batchnorm_with_nd_input(xp):
    x_host, dout_host = host(1, 4, 2, 3), host(2, 4, 2, 3)
    gamma, beta = xbp.asarray(host(3, 6, low=0.5, high=2)), xbp.asarray(host(4, 6))
    layer = BatchNormalization(gamma, beta)
    out = layer.forward(xbp.asarray(x_host))
    dx = layer.backward(xbp.asarray(dout_host))
    assert tuple(out.shape) == (4, 2, 3) and tuple(dx.shape) == (4, 2, 3)
    flat_layer = BatchNormalization(gamma, beta)
    expected_out = flat_layer.forward(xbp.asarray(x_host.reshape(4, 6)))
    expected_dx = flat_layer.backward(xbp.asarray(dout_host.reshape(4, 6)))
    assert relative_error(out, xbp.to_cpu(expected_out).reshape(4, 2, 3)) == 0
    assert relative_error(dx, xbp.to_cpu(expected_dx).reshape(4, 2, 3)) == 0
    assert relative_error(layer.dgamma, flat_layer.dgamma) == 0
    check_backward(layer.forward, layer.backward, [xbp.asarray(x_host)], xbp.asarray(dout_host))


# ---------------------------------------------------------------- Dropout

def test_dropout_training_and_inference(xp):
    x_host = host(1, 50, 40)
    x, dout = xbp.asarray(x_host), xbp.asarray(host(2, 50, 40))
    layer = Dropout(0.3, seed=8)
    out = xbp.to_cpu(layer.forward(x, train_flg=True))
    mask = xbp.to_cpu(layer.mask)
    assert mask.dtype == np.bool_ and mask.shape == (50, 40)
    assert abs(1 - mask.mean() - 0.3) < 0.03  # about 30% dropped
    np.testing.assert_array_equal(out, np.where(mask, x_host, 0.0))
    np.testing.assert_array_equal(xbp.to_cpu(layer.backward(dout)), np.where(mask, xbp.to_cpu(dout), 0.0))
    layer.fixed_mask = True  # central differences need one function of x: this mask
    check_backward(layer.forward, layer.backward, [x], dout)
    np.testing.assert_array_equal(xbp.to_cpu(layer.mask), mask)

    inference = layer.forward(x, train_flg=False)
    assert relative_error(inference, 0.7 * x_host) < 1e-15  # the book's scaling, no mask
    assert relative_error(layer.backward(dout), 0.7 * xbp.to_cpu(dout)) < 1e-15


def test_dropout_masks_repeat_with_the_seed(xp):
    x = xbp.asarray(host(1, 6, 7), dtype="float32")
    a, b, c = Dropout(0.5, seed=1), Dropout(0.5, seed=1), Dropout(0.5, seed=2)
    first = [xbp.to_cpu(layer.forward(x)).copy() for layer in (a, b, c)]
    second = xbp.to_cpu(a.forward(x))
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])
    assert not np.array_equal(first[0], second)  # a new mask each step
    assert a.forward(x).dtype == xp.float32


def test_dropout_fixed_mask_is_reused(xp):
    x = xbp.asarray(host(1, 6, 7))
    layer = Dropout(0.5, seed=3)
    layer.fixed_mask = True
    first = xbp.to_cpu(layer.forward(x)).copy()
    np.testing.assert_array_equal(xbp.to_cpu(layer.forward(x)), first)
    with pytest.raises(ValueError, match=r"^Dropout has a fixed mask of shape \(6, 7\) but got input of "
                                         r"shape \(3, 7\): set fixed_mask = False, or mask = None to draw a "
                                         r"new one\.$"):
        layer.forward(xbp.asarray(host(2, 3, 7)))


def test_dropout_drops_half_by_default_and_nothing_at_a_ratio_of_0(xp):
    x = xbp.asarray(host(1, 40, 50))
    half = Dropout(seed=4)
    assert half.dropout_ratio == 0.5
    assert abs(float(xbp.to_cpu(half.forward(x) == 0).mean()) - 0.5) < 0.05
    none = Dropout(0.0, seed=4)
    assert relative_error(none.forward(x), xbp.to_cpu(x)) == 0
    assert relative_error(none.forward(x, train_flg=False), xbp.to_cpu(x)) == 0


def test_dropout_refuses_a_gradient_on_another_device():
    with xbp.using_backend("array_api_strict", device="device1"):
        layer, x = Dropout(0.5, seed=0), xbp.asarray(host(1, 4, 3))
    layer.forward(x)
    with pytest.raises(xbp.DeviceMismatchError):
        layer.backward(xbp.asarray(host(2, 4, 3)))  # on the default device


def test_dropout_rejects_a_bad_ratio():
    for ratio in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"dropout_ratio must be in \[0, 1\)"):
            Dropout(ratio)


def test_new_layers_keep_arrays_on_their_device():
    with xbp.using_backend("array_api_strict", device="device1"):
        dev = xbp.get_device()
        x, dout = xbp.asarray(host(1, 4, 3)), xbp.asarray(host(2, 4, 3))
        gamma, beta = xbp.asarray(np.ones(3)), xbp.asarray(np.zeros(3))
    dropout, bn = Dropout(0.5, seed=0), BatchNormalization(gamma, beta)
    out = dropout.forward(bn.forward(x))
    dx = bn.backward(dropout.backward(dout))
    arrays = (out, dx, dropout.mask, bn.running_mean, bn.running_var, bn.dgamma, bn.dbeta)
    assert all(xbp.device(a) == dev for a in arrays)


@pytest.mark.parametrize("elsewhere", ["x", "gamma", "beta", "dout"])
def test_batchnorm_refuses_arrays_on_two_devices(elsewhere):
    """Each of x, gamma, beta (forward) and dout (backward) is checked against the others."""
    arrays = {}
    for name, seed in (("x", 1), ("gamma", 2), ("beta", 3), ("dout", 4)):
        with xbp.using_backend("array_api_strict", device="device1" if name == elsewhere else None):
            arrays[name] = xbp.asarray(host(seed, 4, 3) if name in ("x", "dout") else host(seed, 3))
    layer = BatchNormalization(arrays["gamma"], arrays["beta"])
    with pytest.raises(xbp.DeviceMismatchError):
        layer.forward(arrays["x"])
        layer.backward(arrays["dout"])


# ---------------------------------------------------------------- DeviceRNG

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_device_rng_is_seeded_with_the_dtype_and_device_of_like(xp, dtype):
    like = xbp.asarray(np.zeros(2), dtype=dtype)
    first = DeviceRNG(5).uniform((3, 4), like=like)
    again = DeviceRNG(5).uniform((3, 4), like=like)
    assert first.dtype == like.dtype and xbp.device(first) == xbp.device(like)
    assert tuple(first.shape) == (3, 4)
    values = xbp.to_cpu(first)
    np.testing.assert_array_equal(values, xbp.to_cpu(again))
    assert values.min() >= 0.0 and values.max() < 1.0
    assert not np.array_equal(values, xbp.to_cpu(DeviceRNG(6).uniform((3, 4), like=like)))  # the seed counts


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_device_rng_on_the_host_draws_numpys_stream(xp, dtype):
    like = xbp.asarray(np.zeros(2), dtype=dtype)
    if xbp.get_backend() == "cupy" or str(xbp.device(like)).startswith("cuda"):
        pytest.skip("CuPy and torch CUDA draw on the GPU with their own generators, not numpy's stream")
    values = xbp.to_cpu(DeviceRNG(5).uniform((3, 4), like=like))
    np.testing.assert_array_equal(values, np.random.default_rng(5).random((3, 4), dtype=values.dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_rng_numpy_and_portable_paths_agree(dtype):
    like = np.zeros(1, dtype=dtype)
    fast, portable = DeviceRNG(9), DeviceRNG(9, portable=True)
    for shape in [(5, 3), (7,), (2, 2, 2)]:
        a, b = fast.uniform(shape, like=like), portable.uniform(shape, like=like)
        assert type(a) is np.ndarray and a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)


def test_device_rng_draws_on_the_device_of_like():
    with xbp.using_backend("array_api_strict", device="device1"):
        like = xbp.asarray(np.zeros(1))
    assert xbp.device(DeviceRNG(0).uniform((2, 3), like=like)) == xbp.device(like)


def test_device_rng_rejects_integer_like(xp):
    with pytest.raises(ValueError, match=r"draws floating-point numbers; `like` has dtype .*int"):
        DeviceRNG(0).uniform((2,), like=xbp.asarray([1, 2]))
